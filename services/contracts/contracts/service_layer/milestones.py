"""Milestone commands: add, edit, remove, activate (fund), submit work, request changes, approve."""

from platform_runtime.keys import compose
from platform_runtime.errors import Rejected
from platform_schemas.commands.contracts import (
    ActivateMilestone, AddMilestone, ApproveMilestone, EditMilestone, RemoveMilestone, RequestChanges, SubmitWork,
)
from platform_schemas.events.contracts import (
    MAX_UPCOMING_IN_EVENT, ChangesRequested, MilestoneApproved, MilestoneEdited, MilestoneRemoved, WorkSubmitted,
)

from ..domain.contracts import KEEP, Milestone
from ..domain.sagas import AfterRelease, NextMilestone
from .context import Context
from .sagas.fund import fund_milestones
from .sagas.release import release_milestone
from .upcoming import as_wire, upcoming_for

AUTO_RELEASE, REVIEW_REMINDER = "auto_release", "review_reminder"


async def _active_client(ctx: Context, client_id: str) -> None:
    (await ctx.account(client_id)).ensure_may_start_activity()


async def add_milestone(cmd: AddMilestone, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    contract.ensure_client(ctx.actor)
    await _active_client(ctx, contract.client_id)
    ctx.settings.limits.check_milestone(cmd.amount)
    ctx.settings.limits.check_contract([*(m.amount for m in contract.live_milestones), cmd.amount])
    if await ctx.contracts.milestone_ids_taken([cmd.milestone_id]):
        raise Rejected("id_taken", f"milestone id {cmd.milestone_id} is already used")
    m = contract.add_milestone(ctx.actor, Milestone(cmd.milestone_id, cmd.title, cmd.amount, 0, cmd.due_date))
    if cmd.fund_now:
        contract.activate_milestone(ctx.actor, m.milestone_id)
        await fund_milestones(ctx, contract, [m], offer=False, command_id=ctx.message_id, started_by=ctx.message_id)
    else:
        await ctx.complete(ctx.message_id, "MilestoneAdded")
    await ctx.save(contract, "MilestoneAdded")


async def edit_milestone(cmd: EditMilestone, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    if cmd.amount is not None:
        ctx.settings.limits.check_milestone(cmd.amount)
    # Left out: unchanged; given as null: cleared.
    due_date = cmd.due_date if "due_date" in cmd.model_fields_set else KEEP
    m = contract.edit_milestone(ctx.actor, cmd.milestone_id, cmd.title, cmd.amount, due_date)
    ctx.settings.limits.check_contract(m.amount for m in contract.live_milestones)
    await ctx.save(contract, "MilestoneEdited")
    ctx.event(MilestoneEdited(contract_id=contract.contract_id, milestone_id=m.milestone_id, title=m.title,
                              amount=m.amount, currency=contract.currency, due_date=m.due_date), contract.contract_id)
    await ctx.complete(ctx.message_id, "MilestoneEdited")


async def remove_milestone(cmd: RemoveMilestone, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    m = contract.remove_milestone(ctx.actor, cmd.milestone_id)
    await ctx.save(contract, "MilestoneRemoved")
    ctx.event(MilestoneRemoved(contract_id=contract.contract_id, milestone_id=m.milestone_id), contract.contract_id)
    await ctx.complete(ctx.message_id, "MilestoneRemoved")


async def activate_milestone(cmd: ActivateMilestone, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    contract.ensure_client(ctx.actor)
    await _active_client(ctx, contract.client_id)
    m = contract.activate_milestone(ctx.actor, cmd.milestone_id)
    await ctx.save(contract, "ActivateMilestone")
    await fund_milestones(ctx, contract, [m], offer=False, command_id=ctx.message_id, started_by=ctx.message_id)


async def submit_work(cmd: SubmitWork, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    contract.ensure_freelancer(ctx.actor)
    freelancer = await ctx.account(contract.freelancer_id)
    freelancer.ensure_may_start_activity()
    m = contract.submit_work(ctx.actor, cmd.milestone_id, ctx.now, ctx.settings.auto_release_after)
    await ctx.save(contract, "WorkSubmitted")
    timer_payload = {"contract_id": contract.contract_id, "milestone_id": m.milestone_id}
    await ctx.uow.schedule(compose(AUTO_RELEASE, ctx.message_id), AUTO_RELEASE, m.milestone_id, m.review_due_at,
                           timer_payload)
    await ctx.uow.schedule(compose(REVIEW_REMINDER, ctx.message_id), REVIEW_REMINDER, m.milestone_id,
                           m.review_due_at - ctx.settings.review_reminder_before, timer_payload)
    # What is coming up for each of them, this review included: told with the submission.
    ahead = {who: as_wire(await upcoming_for(ctx.upcoming, who, ctx.now, ctx.settings, MAX_UPCOMING_IN_EVENT))
             for who in (contract.client_id, contract.freelancer_id)}
    ctx.event(WorkSubmitted(contract_id=contract.contract_id, milestone_id=m.milestone_id,
                            client_id=contract.client_id, freelancer_id=contract.freelancer_id, message=cmd.message,
                            review_due_at=m.review_due_at,
                            review_reminder_at=m.review_due_at - ctx.settings.review_reminder_before,
                            client_upcoming=ahead[contract.client_id],
                            freelancer_upcoming=ahead[contract.freelancer_id]), contract.contract_id)
    await ctx.complete(ctx.message_id, "WorkSubmitted", review_due_at=m.review_due_at.isoformat())


async def request_changes(cmd: RequestChanges, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    m = contract.request_changes(ctx.actor, cmd.milestone_id)
    await ctx.save(contract, "ChangesRequested")
    await ctx.uow.cancel_timers(m.milestone_id, AUTO_RELEASE, REVIEW_REMINDER)
    ctx.event(ChangesRequested(contract_id=contract.contract_id, milestone_id=m.milestone_id,
                               client_id=contract.client_id, freelancer_id=contract.freelancer_id,
                               message=cmd.message), contract.contract_id)
    await ctx.complete(ctx.message_id, "ChangesRequested")


async def approve_milestone(cmd: ApproveMilestone, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    contract.ensure_client(ctx.actor)
    next_milestone = None
    if cmd.next_milestone and not cmd.keep_open:
        raise Rejected("invalid_data", "a next milestone needs the contract kept open (keep_open true)")
    if cmd.next_milestone:
        # A suspended client's approval with a next milestone is refused whole; a plain one always goes.
        await _active_client(ctx, contract.client_id)
        ctx.settings.limits.check_milestone(cmd.next_milestone.amount)
        ctx.settings.limits.check_contract([*(m.amount for m in contract.live_milestones),
                                            cmd.next_milestone.amount])
        if await ctx.contracts.milestone_ids_taken([cmd.next_milestone.milestone_id]) or any(
                m.milestone_id == cmd.next_milestone.milestone_id for m in contract.milestones):
            raise Rejected("id_taken", f"milestone id {cmd.next_milestone.milestone_id} is already used")
        contract.ensure_room_for_a_milestone()
        next_milestone = NextMilestone(**cmd.next_milestone.model_dump())
    m = contract.approve(ctx.actor, cmd.milestone_id, cmd.keep_open)
    await ctx.save(contract, "MilestoneApproved")
    await ctx.uow.cancel_timers(m.milestone_id, AUTO_RELEASE, REVIEW_REMINDER)
    ctx.event(MilestoneApproved(contract_id=contract.contract_id, milestone_id=m.milestone_id, amount=m.amount,
                                currency=contract.currency), contract.contract_id)
    await release_milestone(ctx, contract, m, m.amount, command_id=ctx.message_id, started_by=ctx.message_id,
                            then=AfterRelease(end_contract=not cmd.keep_open, next_milestone=next_milestone))
