"""Ending commands: end, cancel (refunds and refund requests), answer a refund request, resolve a dispute."""

from platform_runtime.keys import compose
from platform_schemas.commands.contracts import (
    CancelContract, EndContract, ResolveDispute, RespondToRefundRequest,
)
from platform_schemas.events.contracts import (
    DisputeOpened, DisputeResolved, RefundAccepted, RefundRequested,
)

from ..domain.contracts import CANCELLED, DISPUTED, Contract
from ..domain.disputes import Dispute
from ..domain.sagas import AfterRelease
from .context import Context
from .milestones import AUTO_RELEASE, REVIEW_REMINDER
from .sagas.refund import refund_milestone
from .sagas.release import release_milestone

REFUND_WINDOW, DISPUTE_OVERDUE = "refund_window", "dispute_overdue"


async def end_contract(cmd: EndContract, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    to_refund = contract.end(ctx.actor, ctx.now)
    await ctx.save(contract, "ContractEnded")
    for m in to_refund:
        await ctx.uow.cancel_timers(m.milestone_id, AUTO_RELEASE, REVIEW_REMINDER)
        await refund_milestone(ctx, contract, m, m.amount, reason="end", command_id=None, started_by=ctx.message_id)
    await ctx.complete(ctx.message_id, "ContractEnded")


async def cancel_contract(cmd: CancelContract, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    refund_now, ask = contract.cancel(ctx.actor, cmd.reason, ctx.now, ctx.settings.refund_response_window)
    await ctx.save(contract, "CancelContract")
    for m in refund_now:
        await refund_milestone(ctx, contract, m, m.amount, reason="cancel", command_id=ctx.message_id,
                           started_by=ctx.message_id)
    for m in ask:
        await ctx.uow.cancel_timers(m.milestone_id, AUTO_RELEASE, REVIEW_REMINDER)
        await ctx.uow.schedule(compose(REFUND_WINDOW, m.milestone_id), REFUND_WINDOW, m.milestone_id, m.respond_by,
                               {"contract_id": contract.contract_id, "milestone_id": m.milestone_id})
        ctx.event(RefundRequested(contract_id=contract.contract_id, milestone_id=m.milestone_id,
                                  freelancer_id=contract.freelancer_id, amount=m.amount, currency=contract.currency,
                                  respond_by=m.respond_by), contract.contract_id)
    if contract.status == CANCELLED:  # nothing was held: cancelled at once (ContractCancelled is recorded)
        await ctx.complete(ctx.message_id, "ContractCancelled")
    elif ask and not refund_now:
        await ctx.complete(ctx.message_id, "RefundRequested")


async def respond_to_refund_request(cmd: RespondToRefundRequest, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    await answer_refund_request(ctx, contract, ctx.actor, cmd.milestone_id, cmd.accept, ctx.message_id)


async def answer_refund_request(ctx: Context, contract: Contract, actor: str, milestone_id: str, accept: bool,
                                started_by: str) -> None:
    """Shared by the freelancer's answer and the window's silence (`system` accepts)."""
    m = contract.respond_to_refund(actor, milestone_id, accept)
    await ctx.save(contract, "RefundAccepted" if accept else "DisputeOpened")
    await ctx.uow.cancel_timers(m.milestone_id, REFUND_WINDOW)
    if m.status == DISPUTED:
        dispute = Dispute.open(contract, m, ctx.now, ctx.settings.dispute_resolve_within)
        await ctx.disputes.add(dispute)
        await ctx.uow.schedule(compose(DISPUTE_OVERDUE, m.milestone_id), DISPUTE_OVERDUE, m.milestone_id,
                               dispute.resolve_by, {"contract_id": contract.contract_id, "milestone_id": m.milestone_id})
        ctx.event(DisputeOpened(contract_id=contract.contract_id, milestone_id=m.milestone_id,
                                client_id=contract.client_id, freelancer_id=contract.freelancer_id, amount=m.amount,
                                currency=contract.currency, resolve_by=dispute.resolve_by), contract.contract_id)
        await ctx.complete(started_by, "DisputeOpened")
        return
    ctx.event(RefundAccepted(contract_id=contract.contract_id, milestone_id=m.milestone_id, amount=m.amount,
                             currency=contract.currency), contract.contract_id, actor=actor)
    await refund_milestone(ctx, contract, m, m.amount, reason="refund_accepted", command_id=started_by,
                       started_by=started_by)


async def resolve_dispute(cmd: ResolveDispute, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    m = contract.resolve_dispute(ctx.actor, cmd.milestone_id, cmd.release_amount, cmd.refund_amount)
    await ctx.save(contract, "DisputeResolved")
    if dispute := await ctx.disputes.get(m.milestone_id):
        dispute.resolve(ctx.now)
        await ctx.disputes.save(dispute)
    await ctx.uow.cancel_timers(m.milestone_id, DISPUTE_OVERDUE)
    ctx.event(DisputeResolved(contract_id=contract.contract_id, milestone_id=m.milestone_id,
                              release_amount=cmd.release_amount, refund_amount=cmd.refund_amount,
                              currency=contract.currency, resolved_by=ctx.actor), contract.contract_id)
    if cmd.release_amount:
        await release_milestone(ctx, contract, m, cmd.release_amount, command_id=None, started_by=ctx.message_id,
                            then=AfterRelease(refund_amount=cmd.refund_amount))
    else:
        await refund_milestone(ctx, contract, m, cmd.refund_amount, reason="dispute", command_id=None,
                           started_by=ctx.message_id)
    await ctx.complete(ctx.message_id, "DisputeResolved")
