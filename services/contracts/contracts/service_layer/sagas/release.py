"""Release saga: escrow -> client account -> freelancer account, then the milestone is paid.

    step release -> escrow ReleaseEscrow | EscrowReleased -> completed (MilestonePaid)

Afterwards, as the approval asked: fund the next milestone (a fund saga), end the contract, or, for a
dispute split, refund the rest (a refund saga).
"""

from datetime import date

from platform_schemas.commands.saga import ReleaseEscrow
from platform_schemas.events.escrow import EscrowReleased

from ...domain.contracts import Contract, Milestone
from ...domain.sagas import COMPLETED, Saga
from ..context import Context
from . import fund, refund

KIND = "release"


async def start(ctx: Context, contract: Contract, milestone: Milestone, amount: int, *, command_id: str | None,
                started_by: str, automatic: bool = False, then: dict | None = None) -> Saga:
    saga = Saga.start(KIND, contract.contract_id, command_id, started_by, "release",
                      {"milestone_id": milestone.milestone_id, "amount": amount, "automatic": automatic,
                       "then": then or {}}, ctx.now)
    await ctx.sagas.save(saga)
    ctx.ask_escrow(ReleaseEscrow(
        release_id=saga.step_id("release"), saga_id=saga.saga_id, contract_id=contract.contract_id,
        milestone_id=milestone.milestone_id, client_id=contract.client_id, freelancer_id=contract.freelancer_id,
        amount=amount, currency=contract.currency), subject=contract.contract_id)
    return saga


async def on_escrow_released(saga: Saga, event: EscrowReleased, ctx: Context) -> None:
    if not saga.expects("release"):
        return
    contract = await ctx.contract(saga.contract_id)
    m = contract.milestone_paid(event.milestone_id, event.amount, automatic=saga.data["automatic"])
    saga.finish(COMPLETED, "released", ctx.now)
    await ctx.sagas.save(saga)
    then = saga.data["then"]
    outcome = "MilestonePaid"
    if then.get("refund_amount"):
        await refund.start(ctx, contract, m, then["refund_amount"], reason="dispute", command_id=None,
                           started_by=saga.saga_id)
    if then.get("next_milestone"):
        spec = then["next_milestone"]
        added = contract.add_milestone(contract.client_id, Milestone(
            spec["milestone_id"], spec["title"], spec["amount"], 0,
            date.fromisoformat(spec["due_date"]) if spec.get("due_date") else None), room_checked=True)
        added.status = "funding"
        await fund.start(ctx, contract, [added], offer=False, command_id=saga.command_id, started_by=saga.saga_id)
        outcome = None  # the fund saga completes the command
    if then.get("end_contract") and contract.end_after_release(ctx.now):
        outcome = "ContractEnded"
    await ctx.save(contract, "MilestonePaid")
    if outcome:
        await ctx.complete(saga.command_id, outcome)


REPLIES = {EscrowReleased: on_escrow_released}
