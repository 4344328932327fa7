"""Charges and refunds as billing records them: the consumer records the work (`pending`, visible at once),
the gateway loop settles it. Either way the outcome, its history row and its one reply event are written
here, in the caller's transaction."""

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from platform_runtime import tracing
from platform_runtime.logging import get_logger
from platform_schemas.commands.saga import ChargeClient, MilestoneAmount, RefundCharge
from platform_schemas.events.billing import (
    ChargeFailed, ChargeRefunded, ClientCharged, RefundChargeFailed, TransactionRecorded,
)

from ..domain import history
from ..domain.failed_charges import counts_in_streak
from ..domain.gateway_work import GATEWAY_UNAVAILABLE, ChargeStatus, RefundStatus, Verdict, VoidStatus
from .context import Context

log = get_logger(__name__)


def _cause(ctx: Context) -> dict[str, str | None]:
    """Who asked (the saga command): its outcome, settled later by the loop, carries the same correlation
    and the same trace."""
    cause = ctx.uow.cause
    asked = {"correlation_id": cause.correlation_id, "causation_id": cause.message_id, "actor": cause.actor} \
        if cause else {}
    return {**asked, **tracing.current()}


# -- charges --------------------------------------------------------------------------------------
def new_charge(ctx: Context, cmd: ChargeClient) -> dict:
    """The charge as recorded: pending, due at once (its billing method is the client's primary, found by
    the repository in the same statement)."""
    now = ctx.now
    return dict(charge_id=cmd.charge_id, saga_id=cmd.saga_id, contract_id=cmd.contract_id, client_id=cmd.client_id,
                amount=cmd.amount, currency=cmd.currency, purpose=cmd.purpose,
                milestones=[m.model_dump() for m in cmd.milestones], status=ChargeStatus.PENDING, created_at=now,
                next_attempt_at=now, **{"correlation_id": None, "causation_id": None, "actor": None,
                                        "traceparent": None, "tracestate": None, **_cause(ctx)})


@dataclass(frozen=True)
class Settled:
    """A charge's outcome after its `attempts`-th call (0: none was made)."""

    charge: dict
    verdict: Verdict
    attempts: int


def _as_is(charge: dict) -> AbstractContextManager:
    return nullcontext()


async def settle_charge(ctx: Context, charge: dict, verdict: Verdict, attempts: int) -> None:
    """The charge's outcome and its one reply: ClientCharged, or ChargeFailed with the reason."""
    await settle_charges(ctx, [Settled(charge, verdict, attempts)])


async def settle_charges(ctx: Context, settled: list[Settled],
                         replying_to: Callable[[dict], AbstractContextManager] = _as_is) -> None:
    """Each charge's outcome and its one reply (ClientCharged, or ChargeFailed with the reason), in a handful of
    statements whatever their number. `replying_to(charge)` makes the charge's saga command the cause of what
    is published for it (the gateway loop settles charges of many sagas at once)."""
    if not settled:
        return
    now = ctx.now
    streaks, cleared = await _streaks(ctx, settled)
    charged = [s.charge for s in settled if s.verdict.status == ChargeStatus.SUCCEEDED]
    history_rows = {c["charge_id"]: _charge_history(c) for c in charged if c["purpose"] == "fixed_price"}
    recorded = await ctx.work.settle_charges([dict(
        charge_id=s.charge["charge_id"], status=s.verdict.status, attempts=s.attempts,
        gateway_reference=s.verdict.reference, reason_code=s.verdict.reason_code, message=s.verdict.message,
        settled_at=now,
        # a call whose answer was lost may have charged: voided by its key as soon as the gateway answers
        void_status=VoidStatus.PENDING if _given_up(s) else None, next_attempt_at=now if _given_up(s) else None)
        for s in settled], cleared, list(history_rows.values()), now)
    for s in settled:
        with replying_to(s.charge):
            _reply(ctx, s, streaks[s.charge["charge_id"]], history_rows.get(s.charge["charge_id"]), recorded, now)


def _given_up(s: Settled) -> bool:
    return s.verdict.reason_code == GATEWAY_UNAVAILABLE


def _charge_history(charge: dict) -> history.HistoryRow:
    return history.fixed_price_charge(charge["charge_id"], charge["client_id"], charge["contract_id"],
                                      [m["milestone_id"] for m in charge["milestones"]], charge["amount"],
                                      charge["currency"])


async def _streaks(ctx: Context, settled: list[Settled]) -> tuple[dict[str, int], list[str]]:
    """charge id -> the client's consecutive failed charges after it, and the clients whose charges here all
    succeeded: their streaks are cleared with the outcomes, in one statement. Any other client's charges count
    one by one, in order."""
    mixed = {s.charge["client_id"] for s in settled if s.verdict.status != ChargeStatus.SUCCEEDED}
    streaks: dict[str, int] = {}
    cleared = {s.charge["client_id"] for s in settled} - mixed
    for s in settled:
        client_id, reason_code = s.charge["client_id"], s.verdict.reason_code
        if client_id in cleared:
            streaks[s.charge["charge_id"]] = 0
        elif reason_code is None or counts_in_streak(reason_code):
            streaks[s.charge["charge_id"]] = await ctx.billing.count_charge_outcome(
                client_id, succeeded=s.verdict.status == ChargeStatus.SUCCEEDED)
        else:  # no card, or no answer: not the client's failure, its streak stays as it is
            streaks[s.charge["charge_id"]] = await ctx.billing.consecutive_failures(client_id)
    return streaks, sorted(cleared)


def _reply(ctx: Context, s: Settled, streak: int, history_row: history.HistoryRow | None, recorded: set[str],
           now) -> None:
    charge, verdict = s.charge, s.verdict
    common = dict(charge_id=charge["charge_id"], saga_id=charge["saga_id"], contract_id=charge["contract_id"],
                  client_id=charge["client_id"], amount=charge["amount"], currency=charge["currency"],
                  purpose=charge["purpose"])
    if verdict.status == ChargeStatus.FAILED:
        ctx.event(ChargeFailed(**common, reason_code=verdict.reason_code, message=verdict.message,
                               consecutive_failures=streak, step_id=charge["charge_id"],
                               retryable=verdict.retryable), charge["contract_id"])
        if _given_up(s):
            log.error("gateway_charge_given_up", charge_id=charge["charge_id"], saga_id=charge["saga_id"],
                      contract_id=charge["contract_id"], client_id=charge["client_id"], attempts=s.attempts,
                      message=verdict.message)
        return
    if history_row is not None and history_row.transaction_id in recorded:
        _history_recorded(ctx, history_row, now)
    ctx.event(ClientCharged(**common, billing_method_id=charge["billing_method_id"],
                            milestones=[MilestoneAmount(**m) for m in charge["milestones"]],
                            gateway_reference=verdict.reference), charge["contract_id"])


# -- refunds --------------------------------------------------------------------------------------
async def record_refund(ctx: Context, cmd: RefundCharge) -> None:
    now = ctx.now
    await ctx.work.add_refund(
        refund_id=cmd.refund_id, charge_id=cmd.charge_id, saga_id=cmd.saga_id, contract_id=cmd.contract_id,
        client_id=cmd.client_id, milestone_id=cmd.milestone_id, amount=cmd.amount, currency=cmd.currency,
        status=RefundStatus.PENDING, created_at=now, next_attempt_at=now, **_cause(ctx))


async def settle_refund(ctx: Context, refund: dict, verdict: Verdict, attempts: int, billing_method_id: str) -> None:
    """Refunded (ChargeRefunded), or `needs_attention` (RefundChargeFailed): never dropped, an operator retries."""
    await ctx.work.update_refund(
        refund["refund_id"], status=verdict.status, attempts=attempts, gateway_reference=verdict.reference,
        reason_code=verdict.reason_code, message=verdict.message, next_attempt_at=None, settled_at=ctx.now)
    common = dict(refund_id=refund["refund_id"], charge_id=refund["charge_id"], saga_id=refund["saga_id"],
                  contract_id=refund["contract_id"], client_id=refund["client_id"], amount=refund["amount"],
                  currency=refund["currency"], milestone_id=refund["milestone_id"])
    if verdict.status == RefundStatus.NEEDS_ATTENTION:
        refund_failed(ctx, common, verdict.reason_code, verdict.message, retryable=True)
        log.error("gateway_refund_needs_attention", refund_id=refund["refund_id"], charge_id=refund["charge_id"],
                  saga_id=refund["saga_id"], contract_id=refund["contract_id"], client_id=refund["client_id"],
                  attempts=attempts, reason_code=verdict.reason_code, message=verdict.message)
        return
    await record_history(ctx, [history.refund(refund["refund_id"], refund["client_id"], refund["contract_id"],
                                              refund["milestone_id"], refund["amount"], refund["currency"])])
    ctx.event(ChargeRefunded(**common, billing_method_id=billing_method_id), refund["contract_id"])


def refund_failed(ctx: Context, refund: dict, reason_code: str, message: str, retryable: bool) -> None:
    ctx.event(RefundChargeFailed(**refund, step_id=refund["refund_id"], reason_code=reason_code, message=message,
                                 retryable=retryable), refund["contract_id"])


# -- history --------------------------------------------------------------------------------------
async def record_history(ctx: Context, rows: list[history.HistoryRow]) -> None:
    now = ctx.now
    recorded = await ctx.billing.add_history(rows, now)
    for row in rows:
        if row.transaction_id in recorded:
            _history_recorded(ctx, row, now)


def _history_recorded(ctx: Context, row: history.HistoryRow, now) -> None:
    ctx.event(TransactionRecorded(occurred_at=now, **row.__dict__), row.contract_id or row.account_id)
