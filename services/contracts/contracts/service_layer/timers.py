"""What the contracts service's durable timers do when they fire (actor `system`)."""


from platform_runtime.keys import compose
from sqlalchemy import select

from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas.events.contracts import (
    AccountMarkedInactive, DisputeOverdue, MilestoneAutoReleased, ReviewPeriodEndingSoon,
)

from ..adapters.tables import accounts
from ..domain.accounts import ACTIVE, INACTIVE
from ..domain.contracts import REFUND_REQUESTED, SUBMITTED
from ..settings import ContractsSettings
from .context import Context
from .endings import DISPUTE_OVERDUE, REFUND_WINDOW, answer_refund_request
from .milestones import AUTO_RELEASE, REVIEW_REMINDER
from .sagas.orchestrator import SAGA_DEADLINE
from .sagas.release import release_milestone
from .sagas.replies import on_step_deadline

INACTIVITY_SWEEP = "inactivity_sweep"


def timer_handlers(settings: ContractsSettings):
    async def auto_release(payload: dict, ctx: Context) -> None:
        contract = await ctx.contract(payload["contract_id"])
        due = contract.milestone(payload["milestone_id"]).review_due_at
        m = contract.auto_release(payload["milestone_id"], ctx.now)
        if m is None:  # approved, changes requested or resubmitted meanwhile
            return
        await ctx.save(contract, "MilestoneAutoReleased")
        ctx.event(MilestoneAutoReleased(contract_id=contract.contract_id, milestone_id=m.milestone_id,
                                        amount=m.amount, currency=contract.currency, review_due_at=due),
                  contract.contract_id)
        await release_milestone(ctx, contract, m, m.amount, command_id=None, started_by=ctx.message_id,
                            automatic=True)

    async def review_reminder(payload: dict, ctx: Context) -> None:
        contract = await ctx.contract(payload["contract_id"])
        m = contract.milestone(payload["milestone_id"])
        # Only for the review it was armed for: a resubmission's review ends later and has its own reminder.
        if m.status == SUBMITTED and m.review_due_at and m.review_due_at - settings.review_reminder_before <= ctx.now:
            ctx.event(ReviewPeriodEndingSoon(contract_id=contract.contract_id, milestone_id=m.milestone_id,
                                             client_id=contract.client_id, review_due_at=m.review_due_at),
                      contract.contract_id)

    async def refund_window(payload: dict, ctx: Context) -> None:
        contract = await ctx.contract(payload["contract_id"])
        if contract.milestone(payload["milestone_id"]).status == REFUND_REQUESTED:
            await answer_refund_request(ctx, contract, "system", payload["milestone_id"], True, ctx.message_id)

    async def dispute_overdue(payload: dict, ctx: Context) -> None:
        await flag_overdue_dispute(ctx, payload["milestone_id"])

    async def inactivity_sweep(payload: dict, ctx: Context) -> None:
        cutoff = ctx.now - settings.account_inactive_after
        stale = await ctx.uow.session.scalars(select(accounts.c.account_id).where(
            accounts.c.status == ACTIVE, accounts.c.last_activity_at < cutoff).with_for_update(skip_locked=True))
        for account_id in stale:
            account = await ctx.account(account_id)
            account.status = INACTIVE
            await ctx.accounts.save(account)
            ctx.event(AccountMarkedInactive(account_id=account_id, last_activity_at=account.last_activity_at),
                      account_id)
        await schedule_next_sweep(ctx.uow, settings)

    return {SAGA_DEADLINE: on_step_deadline, AUTO_RELEASE: auto_release, REVIEW_REMINDER: review_reminder, REFUND_WINDOW: refund_window,
            INACTIVITY_SWEEP: inactivity_sweep, DISPUTE_OVERDUE: dispute_overdue}


async def flag_overdue_dispute(ctx: Context, milestone_id: str) -> None:
    """Told to both parties and the administrators; the money stays held until an administrator decides."""
    dispute = await ctx.disputes.get(milestone_id)
    if dispute is None or not dispute.flag_overdue(ctx.now):  # resolved meanwhile
        return
    await ctx.disputes.save(dispute)
    ctx.event(DisputeOverdue(contract_id=dispute.contract_id, milestone_id=dispute.milestone_id,
                             client_id=dispute.client_id, freelancer_id=dispute.freelancer_id, amount=dispute.amount,
                             currency=dispute.currency, opened_at=dispute.opened_at, resolve_by=dispute.resolve_by),
              dispute.contract_id, actor="system")


async def schedule_next_sweep(uow: UnitOfWork, settings: ContractsSettings) -> None:
    """One sweep row per period; its id is the period, so instances scheduling it at once make one row."""
    now = uow.clock.now()
    period = settings.inactivity_sweep_every
    epoch = int(now.timestamp() // period.total_seconds()) + 1
    due = now.fromtimestamp(epoch * period.total_seconds(), tz=now.tzinfo)
    await uow.schedule(compose(INACTIVITY_SWEEP, str(epoch)), INACTIVITY_SWEEP, "accounts", due, {})


