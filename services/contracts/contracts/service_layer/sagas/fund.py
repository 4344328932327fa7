"""The fund saga: charge the client's primary billing method, then hold the money in escrow.

An offer's saga ends in OfferSent (with MilestoneFunded) or OfferFundingFailed; a later milestone's in
MilestoneFunded or MilestoneFundingFailed. A hold escrow refuses gives the charge back first.

Escrow holds on billing's ClientCharged by itself (platform_schemas.choreography): the saga sends HoldEscrow only
when the hold's deadline passes without an answer. Escrow's answer may therefore come before billing's, read from
another topic: the charge step takes it too, and ClientCharged, late, then changes nothing.
"""

from platform_schemas.commands.saga import ChargeClient, HoldEscrow, MilestoneAmount, RefundCharge
from platform_schemas.events.billing import ChargeFailed, ChargeRefunded, ClientCharged, RefundChargeFailed
from platform_schemas.events.contracts import (
    MilestoneFunded, MilestoneFundingFailed, MilestoneTerms, OfferFundingFailed, OfferSent,
)
from platform_schemas.events.escrow import EscrowFunded, EscrowHoldRejected
from platform_schemas.topics import BILLING_SAGA_COMMANDS, ESCROW_SAGA_COMMANDS

from ...domain.contracts import Contract, Milestone
from ...domain.sagas import FundData, Saga
from ...domain.sagas import MilestoneAmount as Amount
from ..context import Context
from . import orchestrator
from .table import COMPLETED, FAILED, NEEDS_ATTENTION, Ask, On, SagaTable


async def fund_milestones(ctx: Context, contract: Contract, milestones: list[Milestone], *, offer: bool,
                          command_id: str | None, started_by: str, change: str | None = None) -> Saga:
    """Start the fund saga of these milestones (an offer's first funding when `offer`); with `change`, the
    contract is saved as changed by it, with the saga."""
    data = FundData(offer=offer, currency=contract.currency,
                    milestones=[Amount(milestone_id=m.milestone_id, amount=m.amount) for m in milestones])
    return await orchestrator.start(FUND, ctx, contract, data, command_id=command_id, started_by=started_by,
                                    change=change)


# -- the commands of its steps ---------------------------------------------------------------------


def charge_client(saga: Saga, contract: Contract) -> ChargeClient:
    data: FundData = saga.data
    titles = [contract.milestone(m.milestone_id).title for m in data.milestones]
    return ChargeClient(
        charge_id=saga.step_id("charge"), saga_id=saga.saga_id, contract_id=contract.contract_id,
        client_id=contract.client_id, amount=data.amount, currency=data.currency, purpose="fixed_price",
        milestones=_wire(data), description=f"{contract.title}: {', '.join(titles)}")


def hold_escrow(saga: Saga, contract: Contract) -> HoldEscrow:
    data: FundData = saga.data
    return HoldEscrow(hold_id=saga.step_id("hold"), saga_id=saga.saga_id, charge_id=data.charge_id,
                      contract_id=contract.contract_id, client_id=contract.client_id, currency=data.currency,
                      milestones=_wire(data))


def refund_charge(saga: Saga, contract: Contract) -> RefundCharge:
    data: FundData = saga.data
    return RefundCharge(refund_id=saga.step_id("compensate"), charge_id=data.charge_id, saga_id=saga.saga_id,
                        contract_id=contract.contract_id, client_id=contract.client_id, amount=data.amount,
                        currency=data.currency, description="Charge given back: escrow could not hold it")


def _wire(data: FundData) -> list[MilestoneAmount]:
    return [MilestoneAmount(milestone_id=m.milestone_id, amount=m.amount) for m in data.milestones]


# -- what its answers do ---------------------------------------------------------------------------


async def remember_the_charge(saga: Saga, event: ClientCharged, contract: Contract, ctx: Context) -> None:
    saga.data.charge_id = event.charge_id


async def remember_why_not_held(saga: Saga, event: EscrowHoldRejected, contract: Contract, ctx: Context) -> None:
    saga.data.charge_id = event.charge_id  # the charge to give back, when escrow's answer came before billing's
    saga.data.reason_code, saga.data.message = event.reason_code, event.message


async def funded(saga: Saga, event: EscrowFunded, contract: Contract, ctx: Context) -> None:
    data: FundData = saga.data
    data.charge_id = event.charge_id
    ids = [m.milestone_id for m in data.milestones]
    done = contract.offer_funded(event.charge_id, ids) if data.offer \
        else contract.milestones_funded(event.charge_id, ids)
    for m in done:
        ctx.event(MilestoneFunded(contract_id=contract.contract_id, milestone_id=m.milestone_id, amount=m.amount,
                                  currency=contract.currency, charge_id=event.charge_id), contract.contract_id)
    if data.offer:
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


async def charge_failed(saga: Saga, event: ChargeFailed, contract: Contract, ctx: Context) -> None:
    await _funding_failed(saga, contract, ctx, event.reason_code, event.message)


async def charge_given_back(saga: Saga, event: ChargeRefunded, contract: Contract, ctx: Context) -> None:
    data: FundData = saga.data
    await _funding_failed(saga, contract, ctx, data.reason_code or "hold_failed",
                          f"{data.message} (the charge was refunded)")


async def _funding_failed(saga: Saga, contract: Contract, ctx: Context, reason_code: str, message: str) -> None:
    data: FundData = saga.data
    if data.offer:
        contract.offer_funding_failed()
        ctx.event(OfferFundingFailed(
            contract_id=contract.contract_id, client_id=contract.client_id, freelancer_id=contract.freelancer_id,
            currency=contract.currency, amount=data.amount, reason_code=reason_code, message=message,
            title=contract.title), contract.contract_id)
        outcome = "OfferFundingFailed"
    else:
        for a in data.milestones:
            m = contract.milestone_funding_failed(a.milestone_id)
            ctx.event(MilestoneFundingFailed(
                contract_id=contract.contract_id, milestone_id=m.milestone_id, amount=m.amount,
                currency=contract.currency, reason_code=reason_code, message=message), contract.contract_id)
        outcome = "MilestoneFundingFailed"
    await ctx.complete(saga.command_id, outcome, reason_code=reason_code, message=message)


# -- the saga --------------------------------------------------------------------------------------

FUND = SagaTable(
    kind="fund",
    first="charge",
    steps={
        "charge":     Ask(BILLING_SAGA_COMMANDS, charge_client),
        "hold":       Ask(ESCROW_SAGA_COMMANDS, hold_escrow, taken_on=ClientCharged),  # escrow holds on the charge
        "compensate": Ask(BILLING_SAGA_COMMANDS, refund_charge),
    },
    replies=[
        #  step          answer               what it does            next
        On("charge",     ClientCharged,       remember_the_charge,    "hold"),
        On("charge",     ChargeFailed,        charge_failed,          FAILED),
        # escrow read ClientCharged and answered before contracts read it
        On("charge",     EscrowFunded,        funded,                 COMPLETED),
        On("charge",     EscrowHoldRejected,  remember_why_not_held,  "compensate"),
        On("hold",       EscrowFunded,        funded,                 COMPLETED),
        On("hold",       EscrowHoldRejected,  remember_why_not_held,  "compensate"),
        On("compensate", ChargeRefunded,      charge_given_back,      FAILED),
        # The client is charged and nothing is held: billing keeps the refund for an operator (RetryRefund),
        # whose late ChargeRefunded still ends the saga.
        On("compensate", RefundChargeFailed,  None,                   NEEDS_ATTENTION),
    ],
)
