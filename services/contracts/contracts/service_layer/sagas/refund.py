"""The refund saga: escrow gives a milestone's money back to the client's account, then billing returns it
to the card of the original charge. The contract's own outcome (OfferWithdrawn, OfferDeclined,
ContractCancelled) follows its last refund; the command that asked completes with it.
"""

from platform_runtime.keys import compose
from platform_schemas.commands.saga import RefundCharge, RefundEscrow
from platform_schemas.events.billing import ChargeRefunded, RefundChargeFailed
from platform_schemas.events.contracts import ContractCancelled, OfferDeclined, OfferWithdrawn
from platform_schemas.events.escrow import EscrowRefunded, EscrowRefundFailed
from platform_schemas.topics import BILLING_SAGA_COMMANDS, ESCROW_SAGA_COMMANDS

from ...domain.contracts import REFUNDING, Contract, Milestone
from ...domain.sagas import RefundData, Saga
from ..context import Context
from . import orchestrator
from .table import COMPLETED, NEEDS_ATTENTION, Ask, On, SagaTable


async def refund_milestone(ctx: Context, contract: Contract, milestone: Milestone, amount: int, *, reason: str,
                           command_id: str | None, started_by: str) -> Saga:
    """Start the refund saga of `amount` of this milestone's escrow."""
    data = RefundData(milestone_id=milestone.milestone_id, amount=amount, reason=reason, charge_id=milestone.charge_id)
    return await orchestrator.start(REFUND, ctx, contract, data, command_id=command_id,
                                    started_by=compose(started_by, milestone.milestone_id))


# -- the commands of its steps ---------------------------------------------------------------------


def refund_escrow(saga: Saga, contract: Contract) -> RefundEscrow:
    data: RefundData = saga.data
    return RefundEscrow(refund_id=saga.step_id("escrow"), saga_id=saga.saga_id, contract_id=contract.contract_id,
                        milestone_id=data.milestone_id, client_id=contract.client_id, amount=data.amount,
                        currency=contract.currency)


def refund_charge(saga: Saga, contract: Contract) -> RefundCharge:
    data: RefundData = saga.data
    return RefundCharge(refund_id=saga.step_id("gateway"), charge_id=data.charge_id, saga_id=saga.saga_id,
                        contract_id=contract.contract_id, client_id=contract.client_id, amount=data.amount,
                        currency=contract.currency, milestone_id=data.milestone_id,
                        description=f"Refund of milestone {data.milestone_id}")


# -- what its answers do ---------------------------------------------------------------------------


async def refunded(saga: Saga, event: ChargeRefunded, contract: Contract, ctx: Context) -> None:
    data: RefundData = saga.data
    contract.milestone_refunded(data.milestone_id, event.amount)
    outcome = contract.recorded(OfferWithdrawn, OfferDeclined, ContractCancelled)
    if outcome is not None:
        await ctx.complete(saga.command_id, type(outcome).__name__)
    elif not any(m.status == REFUNDING for m in contract.live_milestones):
        # Final only once the command's last refund is done: GET /commands shows no intermediate outcome.
        await ctx.complete(saga.command_id, "MilestoneRefunded")


# -- the saga --------------------------------------------------------------------------------------

REFUND = SagaTable(
    kind="refund",
    first="escrow",
    steps={
        "escrow":  Ask(ESCROW_SAGA_COMMANDS, refund_escrow),
        "gateway": Ask(BILLING_SAGA_COMMANDS, refund_charge),
    },
    replies=[
        #  step       answer              what it does   next
        On("escrow",  EscrowRefunded,     None,          "gateway"),
        # Nothing left the holding; the milestone stays `refunding` until an operator looks.
        On("escrow",  EscrowRefundFailed, None,          NEEDS_ATTENTION),
        On("gateway", ChargeRefunded,     refunded,      COMPLETED),
        # The gateway refused or never answered: billing keeps the refund for an operator (RetryRefund),
        # whose late ChargeRefunded still completes the saga.
        On("gateway", RefundChargeFailed, None,          NEEDS_ATTENTION),
    ],
)
