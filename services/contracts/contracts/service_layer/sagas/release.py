"""The release saga: escrow -> client account -> freelancer account, then the milestone is paid.

Afterwards, as the approval asked: fund the next milestone (a fund saga), end the contract, or, for a
dispute split, refund the rest (a refund saga).
"""

from platform_schemas.commands.saga import ReleaseEscrow
from platform_schemas.events.escrow import EscrowReleased, EscrowReleaseFailed
from platform_schemas.topics import ESCROW_SAGA_COMMANDS

from ...domain.contracts import M_FUNDING, Contract, Milestone
from ...domain.sagas import AfterRelease, ReleaseData, Saga
from ..context import Context
from . import orchestrator
from .fund import fund_milestones
from .refund import refund_milestone
from .table import COMPLETED, NEEDS_ATTENTION, Ask, On, SagaTable


async def release_milestone(ctx: Context, contract: Contract, milestone: Milestone, amount: int, *,
                            command_id: str | None, started_by: str, automatic: bool = False,
                            then: AfterRelease = AfterRelease()) -> Saga:
    """Start the release saga of `amount` of this milestone's escrow to the freelancer."""
    data = ReleaseData(milestone_id=milestone.milestone_id, amount=amount, automatic=automatic, then=then)
    return await orchestrator.start(RELEASE, ctx, contract, data, command_id=command_id, started_by=started_by)


def release_escrow(saga: Saga, contract: Contract) -> ReleaseEscrow:
    data: ReleaseData = saga.data
    return ReleaseEscrow(release_id=saga.step_id("release"), saga_id=saga.saga_id, contract_id=contract.contract_id,
                         milestone_id=data.milestone_id, client_id=contract.client_id,
                         freelancer_id=contract.freelancer_id, amount=data.amount, currency=contract.currency)


async def paid(saga: Saga, event: EscrowReleased, contract: Contract, ctx: Context) -> None:
    data: ReleaseData = saga.data
    then = data.then
    m = contract.milestone_paid(event.milestone_id, event.amount, automatic=data.automatic)
    outcome = "MilestonePaid"
    if then.refund_amount:
        await refund_milestone(ctx, contract, m, then.refund_amount, reason="dispute", command_id=None,
                               started_by=saga.saga_id)
    if then.next_milestone:
        spec = then.next_milestone
        added = contract.add_milestone(contract.client_id, Milestone(spec.milestone_id, spec.title, spec.amount, 0,
                                                                     spec.due_date), room_checked=True)
        added.status = M_FUNDING
        await fund_milestones(ctx, contract, [added], offer=False, command_id=saga.command_id,
                              started_by=saga.saga_id)
        outcome = None  # the fund saga completes the command
    if then.end_contract and contract.end_after_release(ctx.now):
        outcome = "ContractEnded"
    if outcome:
        await ctx.complete(saga.command_id, outcome)


RELEASE = SagaTable(
    kind="release",
    first="release",
    steps={
        "release": Ask(ESCROW_SAGA_COMMANDS, release_escrow),
    },
    replies=[
        #  step       answer               what it does   next
        On("release", EscrowReleased,      paid,          COMPLETED),
        # Nothing left the holding; the milestone stays `releasing` until an operator looks.
        On("release", EscrowReleaseFailed, None,          NEEDS_ATTENTION),
    ],
)
