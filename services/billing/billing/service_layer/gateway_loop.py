"""The gateway loop: pending charges and refunds -> the payment gateway -> outcome + reply event, outside
the consumer (the same shape as notifications' email delivery).

The consumer only records the work (service_layer/charges.py), so a gateway that is slow or down holds up
no partition. Each worker here takes due rows with `FOR UPDATE SKIP LOCKED` (instances and workers never
call for the same row at once), calls the gateway with each row's id — the saga step id — as idempotency
key, and in the same transaction writes the outcomes and their events, or moves each row's
`next_attempt_at` by the retry policy (domain/gateway_work.py). A crash between the call and the commit
leaves the row pending: the next call carries the same key, and the gateway answers it without charging twice.

Charges, the bulk of the work, go set-based: a worker claims up to GATEWAY_BATCH due charges in one
statement, calls the gateway for them side by side (at most GATEWAY_CONCURRENCY calls at once per instance),
and settles them all in one transaction: a burst costs a few statements per batch, not several empty
transactions per charge. A slow call holds up the settling of its batch (at most GATEWAY_CALL_TIMEOUT), never
the other workers, which claim the charges that come due meanwhile. A worker looks for due charges only when it
may find some: a NOTIFY of a charge recorded came since the last look began, the last look filled a whole batch
(more may wait), or GATEWAY_POLL passed (retries come due by time). So at a low rate, where every charge is
announced on its own, the NOTIFY that wakes every worker costs one claim, which finds the charge, and no empty
ones (the other workers, and the finder's next pass, know that nothing was announced since). Refunds and voids are rarer: they are
looked for when a NOTIFY announces one, when the last look found some, and otherwise once per GATEWAY_POLL.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager

from prometheus_client import Counter, Gauge

from platform_runtime import tracing
from platform_runtime.logging import get_logger
from platform_runtime.loops import poll_forever
from platform_runtime.unit_of_work import Cause, UnitOfWork

from ..adapters.wakeup import Wakeup
from ..domain.gateway import PaymentGateway
from ..domain.gateway_work import (
    NO_PRIMARY_METHOD, GatewayAnswer, Operation, Refused, RetryPolicy, Unanswered, charge_verdict, refund_verdict,
    GATEWAY_UNAVAILABLE, void_verdict,
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
        self._calls_at_once = asyncio.Semaphore(settings.gateway_concurrency)
        self._announced_seen = 0
        self._next_look_at = 0.0  # the first pass looks for everything
        self._rest_found = False
        self._charges_seen = -1  # wakeup.routine_announced when the last look for due charges began
        self._next_charge_look_at = 0.0
        self._more_charges = False  # the last look filled a whole batch

    async def run(self) -> None:
        """Until cancelled: the listener, the gauges, and `gateway_workers` workers side by side."""
        poll = self.settings.gateway_poll.total_seconds()
        await asyncio.gather(
            self.wakeup.run(), poll_forever(self.report, 5.0, "gateway_work_report"),
            *(poll_forever(self.work_once, poll, "gateway_work", wake=self.wakeup.event)
              for _ in range(self.settings.gateway_workers)))

    async def work_once(self) -> bool:
        """Due charges, and a due refund and void (of a saga's charge and of a bonus charge) when they may be due;
        False when nothing was due."""
        busy = await self.charge_due()
        if self._rest_may_be_due():
            async with self.new_uow() as uow:  # one statement tells which kinds to claim from
                ctx = self.new_context(uow)
                due = await ctx.work.rest_due(ctx.now)
            found = [await step() for operation, step in ((Operation.REFUND, self.refund_one),
                                                          (Operation.VOID, self.void_one),
                                                          (Operation.BONUS_VOID, self.void_bonus_charge_one))
                     if operation in due]
            self._rest_found = any(found)
            busy = busy or self._rest_found
        return busy

    def _rest_may_be_due(self) -> bool:
        """Whether to look for refunds and voids now: announced by a NOTIFY, found at the last look, or not
        looked for since GATEWAY_POLL (what comes due by time: a retry's backoff, a bonus charge given up)."""
        now = time.monotonic()
        announced = self.wakeup.announced != self._announced_seen
        if not (announced or self._rest_found or now >= self._next_look_at):
            return False
        self._announced_seen = self.wakeup.announced
        self._next_look_at = now + self.settings.gateway_poll.total_seconds()
        return True

    def _charges_may_be_due(self) -> bool:
        """Whether to look for due charges now (see the module's docstring). Checked and marked with no await in
        between, so that of the workers one NOTIFY woke together only the first one looks; read before the claim's
        snapshot, so a charge announced after it is looked for again."""
        now = time.monotonic()
        announced = self.wakeup.routine_announced
        if announced == self._charges_seen and not self._more_charges and now < self._next_charge_look_at:
            return False
        self._charges_seen, self._more_charges = announced, False
        self._next_charge_look_at = now + self.settings.gateway_poll.total_seconds()
        return True

    async def charge_due(self) -> bool:
        """Up to GATEWAY_BATCH due charges: claimed in one statement, called side by side, settled in one
        transaction. True when the batch was full: more may be due at once."""
        if not self._charges_may_be_due():
            return False
        async with self.new_uow() as uow:
            ctx = self.new_context(uow)
            claimed_at = ctx.now
            due = await ctx.work.due_charges(claimed_at, self.settings.gateway_batch)
            if not due:
                return False
            full = len(due) == self.settings.gateway_batch
            if full:  # more may be due: the other workers, asleep since this look began, look at once too
                self._more_charges = True
                self.wakeup.event.set()
            # The bound runs from the first call: time billing itself was down or behind is not the gateway's.
            give_up_at = [c["give_up_at"] or claimed_at + self.settings.gateway_charge_within for c in due]
            answers = await asyncio.gather(*(self._call(Operation.CHARGE, c, self._charge_call(c),
                                                               charge_id=c["charge_id"]) for c in due))
            now = ctx.now
            settled, retries = [], []
            for charge, bound, answer in zip(due, give_up_at, answers):
                attempts = charge["attempts"] + 1
                verdict = charge_verdict(answer, attempts, now, bound, self.policy)
                if verdict.settled:
                    settled.append(charges.Settled(charge, verdict, attempts))
                else:
                    retries.append(dict(charge_id=charge["charge_id"], attempts=attempts,
                                        next_attempt_at=verdict.retry_at, give_up_at=bound,
                                        last_error=_error(answer)))
            await charges.settle_charges(ctx, settled, replying_to=lambda c: self._on_behalf(uow, "charge", c))
            await ctx.work.retry_charges(retries)
            await uow.commit()
        if any(s.verdict.reason_code == GATEWAY_UNAVAILABLE for s in settled):
            self._rest_found = True  # given up: its void is due at once
        return full

    def _charge_call(self, charge: dict) -> Callable[[], Awaitable[str]] | Refused:
        if charge["token"] is None:
            return Refused(NO_PRIMARY_METHOD, f"billing method {charge['billing_method_id']} is unknown")
        return lambda: self._charge(charge)

    async def _call(self, operation: Operation, row: dict, call: Callable[[], Awaitable[str]] | Refused,
                    **attributes: str) -> GatewayAnswer:
        """One row's call, in the row's trace, among at most GATEWAY_CONCURRENCY of this instance at once."""
        if isinstance(call, Refused):
            return call
        async with self._calls_at_once:
            with tracing.span(f"gateway {operation}", row, saga_id=row["saga_id"], **attributes):
                return await call_gateway(operation, call, self._timeout)

    @staticmethod
    def _on_behalf(uow: UnitOfWork, operation: str, row: dict) -> AbstractContextManager:
        """What is published for a row goes out as caused by its saga command, in the saga's trace."""
        uow.cause = _cause(row)
        return tracing.span(f"gateway {operation} settled", row, saga_id=row["saga_id"])

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
