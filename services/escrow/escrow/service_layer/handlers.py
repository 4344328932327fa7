"""Escrow's saga participant steps: hold, release, refund. Each is one ledger transaction.

Every step is answered: by its success event (again, unchanged, when the same step id comes back: the
saga re-sends a step whose answer it did not get in time), or, through `Rejected` and failures.py, by its
typed failure reply.
"""

from platform_runtime.errors import Rejected

from platform_schemas.commands.saga import HoldEscrow, RefundEscrow, ReleaseEscrow
from platform_schemas.events.escrow import EscrowFunded, EscrowRefunded, EscrowReleased

from ..adapters.ledger_repository import Funding, LedgerRepository, LedgerTransaction
from ..domain import earnings, ledger
from ..domain.wire import wire
from .context import Context
from .earnings import hold_until_available


async def hold_escrow(cmd: HoldEscrow, ctx: Context) -> None:
    repo = ctx.ledger
    tx = ledger.TransactionId(ledger.FUND, cmd.hold_id)
    postings = ledger.fund(tx, cmd.client_id, cmd.currency,
                           [(cmd.contract_id, m.milestone_id, m.amount) for m in cmd.milestones])
    funded: dict[str, int] = {}
    for m in cmd.milestones:
        funded[m.milestone_id] = funded.get(m.milestone_id, 0) + m.amount
    # Not claimed: the step again, answered the same way with no second effect. None: left for later with the
    # batch's other writes, taken as claimed in its own currency (the batch is handled again if it was not).
    held = await repo.hold(tx, cmd.client_id, postings, Funding(cmd.contract_id, cmd.currency, funded))
    if held is not None and held[0] and held[1] != cmd.currency:  # the savepoint takes the claim back with it
        raise Rejected("currency_mismatch", f"contract {cmd.contract_id} is held in {held[1]}")
    ctx.event(EscrowFunded(
        hold_id=cmd.hold_id, saga_id=cmd.saga_id, charge_id=cmd.charge_id, contract_id=cmd.contract_id,
        client_id=cmd.client_id, currency=cmd.currency, amount=sum(m.amount for m in cmd.milestones),
        milestones=cmd.milestones, postings=wire(postings),
    ), cmd.contract_id)


async def release_escrow(cmd: ReleaseEscrow, ctx: Context) -> None:
    """To the freelancer's pending account; available once the security period is over."""
    tx = ledger.TransactionId(ledger.RELEASE, cmd.release_id)
    postings = ledger.release(tx, cmd.contract_id, cmd.milestone_id, cmd.client_id,
                              cmd.freelancer_id, cmd.amount, cmd.currency)
    if await _take_from_escrow(ctx.ledger, tx, cmd, postings, released=cmd.amount):
        earning = earnings.released(cmd.release_id, "release", cmd.contract_id, cmd.freelancer_id, cmd.amount,
                                    cmd.currency, ctx.now, ctx.pending_for, milestone_id=cmd.milestone_id)
        await hold_until_available(ctx, [earning])
        available_at = earning.available_at
    else:
        available_at = await ctx.earnings.first_available_at("release", [cmd.release_id])
    ctx.event(EscrowReleased(**cmd.model_dump(), postings=wire(postings), available_at=available_at),
              cmd.contract_id)


async def refund_escrow(cmd: RefundEscrow, ctx: Context) -> None:
    tx = ledger.TransactionId(ledger.REFUND, cmd.refund_id)
    postings = ledger.refund(tx, cmd.contract_id, cmd.milestone_id, cmd.client_id, cmd.amount,
                             cmd.currency)
    await _take_from_escrow(ctx.ledger, tx, cmd, postings, refunded=cmd.amount)
    ctx.event(EscrowRefunded(**cmd.model_dump(), postings=wire(postings)), cmd.contract_id)


async def _take_from_escrow(repo: LedgerRepository, tx: ledger.TransactionId, cmd: ReleaseEscrow | RefundEscrow,
                            postings: list[ledger.Posting], **taken: int) -> bool:
    """Release and refund alike: one ledger transaction out of a milestone's holding; False if already done."""
    if not await repo.claim(tx, cmd.contract_id, cmd.milestone_id):
        return False
    # Refused (Rejected) here: the savepoint takes the claim back with it.
    ledger.ensure_held(await repo.held(cmd.contract_id, cmd.milestone_id), cmd.amount, cmd.milestone_id)
    await repo.post([LedgerTransaction(tx, cmd.contract_id, cmd.milestone_id, postings)])
    await repo.take_from_holding(cmd.contract_id, cmd.milestone_id, **taken)
    return True


HANDLERS = {HoldEscrow: hold_escrow, ReleaseEscrow: release_escrow, RefundEscrow: refund_escrow}
