"""Fund saga: charge the client's primary billing method, then hold the money in escrow.

    step charge -> billing ChargeClient  | ClientCharged -> hold     | ChargeFailed -> failed
    step hold   -> escrow HoldEscrow     | EscrowFunded -> completed | EscrowHoldRejected -> compensate
    step compensate -> billing RefundCharge | ChargeRefunded -> failed (the charge is given back)

An offer's saga ends in OfferSent (with MilestoneFunded) or OfferFundingFailed; a later milestone's
in MilestoneFunded or MilestoneFundingFailed.
"""

from platform_schemas.commands.saga import ChargeClient, HoldEscrow, MilestoneAmount, RefundCharge
from platform_schemas.events.billing import ChargeFailed, ChargeRefunded, ClientCharged
from platform_schemas.events.contracts import (
    MilestoneFunded, MilestoneFundingFailed, MilestoneTerms, OfferFundingFailed, OfferSent,
)
from platform_schemas.events.escrow import EscrowFunded, EscrowHoldRejected

from ...domain.contracts import Contract, Milestone
from ...domain.sagas import COMPLETED, FAILED, Saga
from ..context import Context

KIND = "fund"


async def start(ctx: Context, contract: Contract, milestones: list[Milestone], *, offer: bool,
                command_id: str | None, started_by: str) -> Saga:
    amounts = [{"milestone_id": m.milestone_id, "amount": m.amount} for m in milestones]
    saga = Saga.start(KIND, contract.contract_id, command_id, started_by, "charge",
                      {"offer": offer, "milestones": amounts, "currency": contract.currency}, ctx.now)
    await ctx.sagas.save(saga)
    ctx.ask_billing(ChargeClient(
        charge_id=saga.step_id("charge"), saga_id=saga.saga_id, contract_id=contract.contract_id,
        client_id=contract.client_id, amount=sum(m.amount for m in milestones), currency=contract.currency,
        purpose="fixed_price", milestones=[MilestoneAmount(**a) for a in amounts],
        description=f"{contract.title}: {', '.join(m.title for m in milestones)}",
    ), subject=contract.contract_id)
    return saga


async def on_client_charged(saga: Saga, event: ClientCharged, ctx: Context) -> None:
    if not saga.expects("charge"):
        return
    contract = await ctx.contract(saga.contract_id)
    saga.data = {**saga.data, "charge_id": event.charge_id}
    saga.advance("charged", "hold", ctx.now)
    await ctx.sagas.save(saga)
    ctx.ask_escrow(HoldEscrow(
        hold_id=saga.step_id("hold"), saga_id=saga.saga_id, charge_id=event.charge_id,
        contract_id=contract.contract_id, client_id=contract.client_id, currency=contract.currency,
        milestones=[MilestoneAmount(**a) for a in saga.data["milestones"]],
    ), subject=contract.contract_id)


async def on_escrow_funded(saga: Saga, event: EscrowFunded, ctx: Context) -> None:
    if not saga.expects("hold"):
        return
    contract = await ctx.contract(saga.contract_id)
    ids = [a["milestone_id"] for a in saga.data["milestones"]]
    funded = contract.offer_funded(event.charge_id, ids) if saga.data["offer"] \
        else contract.milestones_funded(event.charge_id, ids)
    await ctx.save(contract, "MilestoneFunded")
    saga.finish(COMPLETED, "held", ctx.now)
    await ctx.sagas.save(saga)
    for m in funded:
        ctx.event(MilestoneFunded(contract_id=contract.contract_id, milestone_id=m.milestone_id, amount=m.amount,
                                  currency=contract.currency, charge_id=event.charge_id), contract.contract_id)
    if saga.data["offer"]:
        ctx.event(OfferSent(
            contract_id=contract.contract_id, client_id=contract.client_id, freelancer_id=contract.freelancer_id,
            title=contract.title, currency=contract.currency, deposit=contract.deposit,
            deposited_amount=event.amount,
            milestones=[MilestoneTerms(milestone_id=m.milestone_id, title=m.title, amount=m.amount,
                                       due_date=m.due_date) for m in contract.live_milestones],
        ), contract.contract_id)
        await ctx.complete(saga.command_id, "OfferSent")
    else:
        await ctx.complete(saga.command_id, "MilestoneFunded", milestone_ids=ids)


async def on_charge_failed(saga: Saga, event: ChargeFailed, ctx: Context) -> None:
    if not saga.expects("charge"):
        return
    await _fail(saga, ctx, event.reason_code, event.message)


async def on_hold_rejected(saga: Saga, event: EscrowHoldRejected, ctx: Context) -> None:
    if not saga.expects("hold"):
        return
    contract = await ctx.contract(saga.contract_id)
    saga.data = {**saga.data, "reason_code": event.reason_code, "message": event.message}
    saga.advance("hold_rejected", "compensate", ctx.now)
    await ctx.sagas.save(saga)
    ctx.ask_billing(RefundCharge(
        refund_id=saga.step_id("compensate"), charge_id=event.charge_id, saga_id=saga.saga_id,
        contract_id=contract.contract_id, client_id=contract.client_id,
        amount=sum(a["amount"] for a in saga.data["milestones"]), currency=contract.currency,
        description="Charge given back: escrow could not hold it",
    ), subject=contract.contract_id)


async def on_charge_refunded(saga: Saga, event: ChargeRefunded, ctx: Context) -> None:
    if not saga.expects("compensate"):
        return
    await _fail(saga, ctx, saga.data["reason_code"], f"{saga.data['message']} (the charge was refunded)")


async def _fail(saga: Saga, ctx: Context, reason_code: str, message: str) -> None:
    contract = await ctx.contract(saga.contract_id)
    amount = sum(a["amount"] for a in saga.data["milestones"])
    if saga.data["offer"]:
        contract.offer_funding_failed()
        ctx.event(OfferFundingFailed(
            contract_id=contract.contract_id, client_id=contract.client_id, freelancer_id=contract.freelancer_id,
            currency=contract.currency, amount=amount, reason_code=reason_code, message=message,
            title=contract.title), contract.contract_id)
        outcome = "OfferFundingFailed"
    else:
        for a in saga.data["milestones"]:
            m = contract.milestone_funding_failed(a["milestone_id"])
            ctx.event(MilestoneFundingFailed(
                contract_id=contract.contract_id, milestone_id=m.milestone_id, amount=m.amount,
                currency=contract.currency, reason_code=reason_code, message=message), contract.contract_id)
        outcome = "MilestoneFundingFailed"
    await ctx.save(contract, outcome)
    saga.finish(FAILED, reason_code, ctx.now)
    await ctx.sagas.save(saga)
    await ctx.complete(saga.command_id, outcome, reason_code=reason_code, message=message)


REPLIES = {
    ClientCharged: on_client_charged,
    ChargeFailed: on_charge_failed,
    EscrowFunded: on_escrow_funded,
    EscrowHoldRejected: on_hold_rejected,
    ChargeRefunded: on_charge_refunded,
}
