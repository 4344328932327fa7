"""The gateway loop: pending charges and refunds -> the payment gateway -> outcome + reply event, outside
the consumer (the same shape as notifications' email delivery).

The consumer only records the work (service_layer/charges.py), so a gateway that is slow or down holds up
no partition. Each worker here takes one due row with `FOR UPDATE SKIP LOCKED` (instances and workers never
call for the same row at once), calls the gateway with the row's id — the saga step id — as idempotency
key, and in the same transaction writes the outcome and its event, or moves the row's `next_attempt_at`
by the retry policy (domain/gateway_work.py). A crash between the call and the commit leaves the row
pending: the next call carries the same key, and the gateway answers it without charging twice.
"""

import asyncio
from collections.abc import Callable

from prometheus_client import Counter, Gauge

from platform_runtime import tracing
from platform_runtime.logging import get_logger
from platform_runtime.loops import poll_forever
from platform_runtime.unit_of_work import Cause, UnitOfWork

from ..adapters.wakeup import Wakeup
from ..domain.gateway import PaymentGateway
from ..domain.gateway_work import (
    NO_PRIMARY_METHOD, GatewayAnswer, Operation, Refused, RetryPolicy, Unanswered, charge_verdict, refund_verdict,
    void_verdict,
)
from ..settings import BillingSettings
from . import charges
from .context import Context
from .gateway_calls import call_gateway

log = get_logger(__name__)
BONUS_VOIDS = Counter("bonus_charge_voids_total", "Bonus charges given up unanswered and then voided at the gateway, "
                      "by whether the gateway had taken them (had_been_charged: true | false)", ["had_been_charged"])
WORK = Gauge("gateway_work", "Open gateway work by operation and status (pending, needs_attention)",
             ["operation", "status"])


def _cause(row: dict) -> Cause:
    """The saga command that asked for the work: its outcome carries that command's correlation."""
    return Cause(row["causation_id"] or row["saga_id"], row["correlation_id"] or row["saga_id"],
                 row["actor"] or "system")


class GatewayLoop:
    def __init__(self, new_uow: Callable[[], UnitOfWork], new_context: Callable[[UnitOfWork], Context],
                 gateway: PaymentGateway, settings: BillingSettings, policy: RetryPolicy, wakeup: Wakeup) -> None:
        self.new_uow = new_uow
        self.new_context = new_context
        self.gateway = gateway
        self.settings = settings
        self.policy = policy
        self.wakeup = wakeup

    async def run(self) -> None:
        """Until cancelled: the listener, the gauges, and `gateway_workers` workers side by side."""
        poll = self.settings.gateway_poll.total_seconds()
        await asyncio.gather(
            self.wakeup.run(), poll_forever(self.report, 5.0, "gateway_work_report"),
            *(poll_forever(self.work_once, poll, "gateway_work", wake=self.wakeup.event)
              for _ in range(self.settings.gateway_workers)))

    async def work_once(self) -> bool:
        """One due charge, refund and void (of a saga's charge and of a bonus charge), if any; False when nothing
        was due."""
        charged = await self.charge_one()
        refunded = await self.refund_one()
        voided = await self.void_one()
        bonus_voided = await self.void_bonus_charge_one()
        return charged or refunded or voided or bonus_voided

    async def charge_one(self) -> bool:
        async with self.new_uow() as uow:
            ctx = self.new_context(uow)
            charge = await ctx.work.next_due_charge(ctx.now)
            if charge is None:
                return False
            uow.cause = _cause(charge)
            with tracing.span("gateway charge", charge, charge_id=charge["charge_id"], saga_id=charge["saga_id"]):
                await self._charge_and_settle(ctx, charge)
            await uow.commit()
        return True

    async def _charge_and_settle(self, ctx: Context, charge: dict) -> None:
        # The bound runs from the first call: time billing itself was down or behind is not the gateway's.
        give_up_at = charge["give_up_at"] or ctx.now + self.settings.gateway_charge_within
        if charge["token"] is None:
            answer = Refused(NO_PRIMARY_METHOD, f"billing method {charge['billing_method_id']} is unknown")
        else:
            answer = await call_gateway(Operation.CHARGE, lambda: self._charge(charge), self._timeout)
        attempts = charge["attempts"] + 1
        verdict = charge_verdict(answer, attempts, ctx.now, give_up_at, self.policy)
        if verdict.settled:
            await charges.settle_charge(ctx, charge, verdict, attempts)
        else:
            await ctx.work.update_charge(charge["charge_id"], attempts=attempts, next_attempt_at=verdict.retry_at,
                                         give_up_at=give_up_at, last_error=_error(answer))

    async def refund_one(self) -> bool:
        async with self.new_uow() as uow:
            ctx = self.new_context(uow)
            refund = await ctx.work.next_due_refund(ctx.now)
            if refund is None:
                return False
            uow.cause = _cause(refund)
            with tracing.span("gateway refund", refund, refund_id=refund["refund_id"], saga_id=refund["saga_id"]):
                await self._refund_and_settle(ctx, refund)
            await uow.commit()
        return True

    async def _refund_and_settle(self, ctx: Context, refund: dict) -> None:
        give_up_at = refund["give_up_at"] or ctx.now + self.settings.gateway_refund_within
        answer = await call_gateway(Operation.REFUND, lambda: self.gateway.refund(
            refund["refund_id"], refund["charge_reference"], refund["amount"]), self._timeout)
        attempts = refund["attempts"] + 1
        verdict = refund_verdict(answer, attempts, ctx.now, give_up_at, self.policy)
        if verdict.settled:
            await charges.settle_refund(ctx, refund, verdict, attempts, refund["billing_method_id"])
        else:
            await ctx.work.update_refund(refund["refund_id"], attempts=attempts, next_attempt_at=verdict.retry_at,
                                         give_up_at=give_up_at, last_error=_error(answer))

    async def void_one(self) -> bool:
        """A charge given up is voided by its key (asked again until the gateway answers, never dropped)."""
        async with self.new_uow() as uow:
            ctx = self.new_context(uow)
            charge = await ctx.work.next_due_void(ctx.now)
            if charge is None:
                return False
            answer = await call_gateway(Operation.VOID, lambda: self.gateway.void(charge["charge_id"]), self._timeout)
            attempts = charge["attempts"] + 1
            verdict = void_verdict(answer, attempts, ctx.now, self.policy)
            await ctx.work.update_charge(charge["charge_id"], void_status=verdict.status, attempts=attempts,
                                         next_attempt_at=verdict.retry_at, last_error=_error(answer))
            await uow.commit()
        if verdict.settled:
            log.warning("gateway_charge_voided", charge_id=charge["charge_id"], saga_id=charge["saga_id"],
                        client_id=charge["client_id"], had_been_charged=bool(verdict.reference),
                        voided_reference=verdict.reference or None)
        return True

    async def void_bonus_charge_one(self) -> bool:
        """A bonus batch's charge given up unanswered is voided by its idempotency key, the same way: asked again
        until the gateway answers. Until then its bonuses stay past due and no later batch charges them again
        (adapters/bonus_repository.py, take_pending); once voided, the next batch retries them under its own key.
        So a charge the gateway took without the answer arriving is given back, and the client pays once."""
        async with self.new_uow() as uow:
            ctx = self.new_context(uow)
            charge = await ctx.work.next_due_bonus_void(ctx.now)
            if charge is None:
                return False
            answer = await call_gateway(Operation.BONUS_VOID, lambda: self.gateway.void(charge["idempotency_key"]),
                                        self._timeout)
            attempts = charge["attempts"] + 1
            verdict = void_verdict(answer, attempts, ctx.now, self.policy)
            await ctx.work.update_bonus_charge(charge["charge_id"], void_status=verdict.status, attempts=attempts,
                                               retry_at=verdict.retry_at, last_error=_error(answer))
            await uow.commit()
        if verdict.settled:
            BONUS_VOIDS.labels(str(bool(verdict.reference)).lower()).inc()
            log.warning("bonus_charge_voided", charge_id=charge["charge_id"], client_id=charge["client_id"],
                        business_date=charge["business_date"].isoformat(), amount=charge["amount"],
                        currency=charge["currency"], had_been_charged=bool(verdict.reference),
                        voided_reference=verdict.reference or None)
        return True

    async def _charge(self, charge: dict) -> str:
        charged = await self.gateway.charge(charge["charge_id"], charge["token"], charge["amount"], charge["currency"])
        return charged.reference

    @property
    def _timeout(self) -> float:
        return self.settings.gateway_call_timeout.total_seconds()

    async def report(self) -> bool:
        """The `gateway_work` gauge, from the database (every instance reports the same totals)."""
        async with self.new_uow() as uow:
            counts = await self.new_context(uow).work.counts()
        for (operation, status), count in counts.items():
            WORK.labels(operation, status).set(count)
        return False


def _error(answer: GatewayAnswer) -> str | None:
    if isinstance(answer, Unanswered):
        return answer.error
    return f"{answer.reason_code}: {answer.message}" if isinstance(answer, Refused) else None
