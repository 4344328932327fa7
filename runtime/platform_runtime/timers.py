"""Durable timers: rows in the service's database, fired once by a conditional update.

Several instances may run this loop: `FOR UPDATE SKIP LOCKED` hands each due row to one of them,
and the row is marked fired in the same transaction as the effect, so a crash before the commit
leaves it due and a crash after it leaves it fired. Never both, never neither.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import select, update

from . import metrics, tracing
from .clock import Clock
from .context import ContextFactory, HandlerContext, TimerHandler
from .logging import get_logger
from .loops import poll_forever
from .unit_of_work import TRACE_KEY, Cause, UnitOfWork

log = get_logger(__name__)


@dataclass
class TimerRunner:
    new_uow: Callable[[], UnitOfWork]
    handlers: Mapping[str, TimerHandler]
    clock: Clock
    poll_seconds: float = 1.0
    batch: int = 100
    context: ContextFactory = HandlerContext

    async def fire_due(self) -> int:
        """Fire up to `batch` due timers, each in its own transaction; returns how many were tried.

        One timer per transaction: a transaction holding the locks of many fired timers' aggregates
        deadlocks with a consumer batch that locks the same aggregates in another order.
        """
        failed: list[str] = []
        tried = 0
        while tried < self.batch:
            async with self.new_uow() as uow:
                timers = uow.tables["timers"]
                row = (await uow.session.execute(
                    select(timers)
                    .where(timers.c.fired_at.is_(None), timers.c.cancelled_at.is_(None),
                           timers.c.due_at <= self.clock.now(), timers.c.timer_id.not_in(failed))
                    .order_by(timers.c.due_at).limit(1).with_for_update(skip_locked=True)
                )).mappings().first()
                if row is None:
                    return tried
                if not await self._fire(row, uow):
                    failed.append(row["timer_id"])  # tried again at the next poll, not in a tight loop
                await uow.commit()
                tried += 1
        return tried

    async def _fire(self, row, uow: UnitOfWork) -> bool:
        timers = uow.tables["timers"]
        uow.cause = Cause(f"timer:{row['timer_id']}", row["correlation_id"] or row["timer_id"], "system")
        savepoint = await uow.session.begin_nested()
        queued = uow.checkpoint()
        payload = {k: v for k, v in row["payload"].items() if not k.startswith(TRACE_KEY)}
        trace_context = {k[len(TRACE_KEY):]: v for k, v in row["payload"].items() if k.startswith(TRACE_KEY)}
        try:
            with tracing.span(f"timer {row['kind']}", trace_context, timer_id=row["timer_id"]):
                await self.handlers[row["kind"]](payload, self.context(uow))
            await uow.session.execute(
                update(timers).where(timers.c.timer_id == row["timer_id"]).values(fired_at=self.clock.now())
            )
            await savepoint.commit()
        except Exception as error:  # noqa: BLE001 - one bad timer must not hold back the others
            await savepoint.rollback()
            uow.restore(queued)
            await uow.session.execute(
                update(timers).where(timers.c.timer_id == row["timer_id"])
                .values(attempts=timers.c.attempts + 1, last_error=repr(error)[:2000])
            )
            log.error("timer_failed", timer_id=row["timer_id"], error=repr(error))
            return False
        metrics.TIMERS_FIRED.labels(row["kind"]).inc()
        log.info("timer_fired", timer_id=row["timer_id"], kind=row["kind"])
        return True

    async def run(self) -> None:
        if not self.handlers:
            return  # a service without timers (notifications) would only look at an empty table every second

        async def step() -> bool:
            return await self.fire_due() >= self.batch  # a full batch: more may be due at once

        await poll_forever(step, self.poll_seconds, "timers")
