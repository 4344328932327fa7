"""Charges and refunds as billing records them: the consumer records the work (`pending`, visible at once),
the gateway loop settles it. Either way the outcome, its history row and its one reply event are written
here, in the caller's transaction."""

from platform_runtime import tracing
from platform_runtime.logging import get_logger
from platform_schemas.commands.saga import ChargeClient, MilestoneAmount, RefundCharge
from platform_schemas.events.billing import (
    ChargeFailed, ChargeRefunded, ClientCharged, RefundChargeFailed, TransactionRecorded,
)

from ..domain import history
from ..domain.billing_methods import BillingMethod
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
async def record_charge(ctx: Context, cmd: ChargeClient, method: BillingMethod | None) -> dict:
    now = ctx.now
    charge = dict(charge_id=cmd.charge_id, saga_id=cmd.saga_id, contract_id=cmd.contract_id, client_id=cmd.client_id,
                  billing_method_id=method.billing_method_id if method else None, amount=cmd.amount,
                  currency=cmd.currency, purpose=cmd.purpose, milestones=[m.model_dump() for m in cmd.milestones],
                  status=ChargeStatus.PENDING, created_at=now, next_attempt_at=now, **_cause(ctx))
    await ctx.work.add_charge(**charge)
    return charge


async def settle_charge(ctx: Context, charge: dict, verdict: Verdict, attempts: int) -> None:
    """The charge's outcome and its one reply: ClientCharged, or ChargeFailed with the reason."""
    client_id = charge["client_id"]
    if verdict.reason_code is None or counts_in_streak(verdict.reason_code):
        streak = await ctx.billing.count_charge_outcome(client_id, succeeded=verdict.status == ChargeStatus.SUCCEEDED)
    else:  # no card, or no answer: not the client's failure, its streak stays as it is
        streak = await ctx.billing.consecutive_failures(client_id)
    given_up = verdict.reason_code == GATEWAY_UNAVAILABLE
    await ctx.work.update_charge(
        charge["charge_id"], status=verdict.status, attempts=attempts, gateway_reference=verdict.reference,
        reason_code=verdict.reason_code, message=verdict.message, settled_at=ctx.now,
        # a call whose answer was lost may have charged: voided by its key as soon as the gateway answers
        void_status=VoidStatus.PENDING if given_up else None, next_attempt_at=ctx.now if given_up else None)
    common = dict(charge_id=charge["charge_id"], saga_id=charge["saga_id"], contract_id=charge["contract_id"],
                  client_id=client_id, amount=charge["amount"], currency=charge["currency"],
                  purpose=charge["purpose"])
    if verdict.status == ChargeStatus.FAILED:
        ctx.event(ChargeFailed(**common, reason_code=verdict.reason_code, message=verdict.message,
                               consecutive_failures=streak, step_id=charge["charge_id"],
                               retryable=verdict.retryable), charge["contract_id"])
        if given_up:
            log.error("gateway_charge_given_up", charge_id=charge["charge_id"], saga_id=charge["saga_id"],
                      contract_id=charge["contract_id"], client_id=client_id, attempts=attempts,
                      message=verdict.message)
        return
    milestones = [MilestoneAmount(**m) for m in charge["milestones"]]
    if charge["purpose"] == "fixed_price":
        await record_history(ctx, [history.fixed_price_charge(
            charge["charge_id"], client_id, charge["contract_id"], [m.milestone_id for m in milestones],
            charge["amount"], charge["currency"])])
    ctx.event(ClientCharged(**common, billing_method_id=charge["billing_method_id"], milestones=milestones,
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
    for row in rows:
        if await ctx.billing.add_history(row, now):
            ctx.event(TransactionRecorded(occurred_at=now, **row.__dict__), row.contract_id or row.account_id)
