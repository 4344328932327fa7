"""Refund saga: escrow gives a milestone's money back, then billing returns it to the original card.

    step escrow  -> escrow RefundEscrow  | EscrowRefunded -> gateway
    step gateway -> billing RefundCharge | ChargeRefunded -> completed (MilestoneRefunded)

A refund the gateway keeps failing stays in step `gateway` (billing retries it with backoff); it is
never dropped. When the last refund of a withdrawn, declined or cancelled contract completes, the
contract's own outcome event follows.
"""

from platform_schemas.commands.saga import RefundCharge, RefundEscrow
from platform_schemas.events.billing import ChargeRefunded
from platform_schemas.events.contracts import ContractCancelled, OfferDeclined, OfferWithdrawn
from platform_schemas.events.escrow import EscrowRefunded

from ...domain.contracts import Contract, Milestone
from ...domain.sagas import COMPLETED, Saga
from ..context import Context

KIND = "refund"


async def start(ctx: Context, contract: Contract, milestone: Milestone, amount: int, *, reason: str,
                command_id: str | None, started_by: str) -> Saga:
    saga = Saga.start(KIND, contract.contract_id, command_id, f"{started_by}:{milestone.milestone_id}", "escrow",
                      {"milestone_id": milestone.milestone_id, "amount": amount, "reason": reason,
                       "charge_id": milestone.charge_id}, ctx.now)
    await ctx.sagas.save(saga)
    ctx.ask_escrow(RefundEscrow(
        refund_id=saga.step_id("escrow"), saga_id=saga.saga_id, contract_id=contract.contract_id,
        milestone_id=milestone.milestone_id, client_id=contract.client_id, amount=amount,
        currency=contract.currency), subject=contract.contract_id)
    return saga


async def on_escrow_refunded(saga: Saga, event: EscrowRefunded, ctx: Context) -> None:
    if not saga.expects("escrow"):
        return
    contract = await ctx.contract(saga.contract_id)
    saga.advance("escrow_refunded", "gateway", ctx.now)
    await ctx.sagas.save(saga)
    ctx.ask_billing(RefundCharge(
        refund_id=saga.step_id("gateway"), charge_id=saga.data["charge_id"], saga_id=saga.saga_id,
        contract_id=contract.contract_id, client_id=contract.client_id, amount=event.amount,
        currency=contract.currency, milestone_id=event.milestone_id,
        description=f"Refund of milestone {event.milestone_id}"), subject=contract.contract_id)


async def on_charge_refunded(saga: Saga, event: ChargeRefunded, ctx: Context) -> None:
    if not saga.expects("gateway"):
        return
    contract = await ctx.contract(saga.contract_id)
    contract.milestone_refunded(saga.data["milestone_id"], event.amount)
    saga.finish(COMPLETED, "refunded", ctx.now)
    await ctx.sagas.save(saga)
    await ctx.complete(saga.command_id, "MilestoneRefunded")
    await complete_with_contract_outcome(ctx, contract, saga.command_id)
    await ctx.save(contract, "MilestoneRefunded")


async def complete_with_contract_outcome(ctx: Context, contract: Contract, command_id: str | None) -> None:
    """The command that ended the contract completes with the contract's own outcome, once recorded."""
    outcome = contract.recorded(OfferWithdrawn, OfferDeclined, ContractCancelled)
    if outcome is not None:
        await ctx.complete(command_id, type(outcome).__name__)


REPLIES = {EscrowRefunded: on_escrow_refunded, ChargeRefunded: on_charge_refunded}
