"""Durable timers: rows in the service's database, fired once by a conditional update.

Several instances may run this loop: `FOR UPDATE SKIP LOCKED` hands each due row to one of them,
and the row is marked fired in the same transaction as the effect, so a crash before the commit
leaves it due and a crash after it leaves it fired. Never both, never neither.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from . import metrics
from .clock import Clock
from .logging import get_logger
from .unit_of_work import Cause, UnitOfWork

log = get_logger(__name__)
TimerHandler = Callable[[dict[str, Any], UnitOfWork], Awaitable[None]]


@dataclass
class TimerRunner:
    new_uow: Callable[[], UnitOfWork]
    handlers: dict[str, TimerHandler]
    clock: Clock
    poll_seconds: float = 1.0
    batch: int = 100

    async def fire_due(self) -> int:
        async with self.new_uow() as uow:
            timers = uow.tables["timers"]
            due = (await uow.session.execute(
                select(timers)
                .where(timers.c.fired_at.is_(None), timers.c.cancelled_at.is_(None),
                       timers.c.due_at <= self.clock.now())
                .order_by(timers.c.due_at).limit(self.batch).with_for_update(skip_locked=True)
            )).mappings().all()
            for row in due:
                await self._fire(row, uow)
            await uow.commit()
            return len(due)

    async def _fire(self, row, uow: UnitOfWork) -> None:
        timers = uow.tables["timers"]
        uow.cause = Cause(f"timer:{row['timer_id']}", row["correlation_id"] or row["timer_id"], "system")
        savepoint = await uow.session.begin_nested()
        queued = len(uow.outgoing)
        try:
            await self.handlers[row["kind"]](dict(row["payload"]), uow)
            await uow.session.execute(
                update(timers).where(timers.c.timer_id == row["timer_id"]).values(fired_at=self.clock.now())
            )
            await savepoint.commit()
        except Exception as error:  # noqa: BLE001 - one bad timer must not hold back the others
            await savepoint.rollback()
            del uow.outgoing[queued:]
            await uow.session.execute(
                update(timers).where(timers.c.timer_id == row["timer_id"])
                .values(attempts=timers.c.attempts + 1, last_error=repr(error)[:2000])
            )
            log.error("timer_failed", timer_id=row["timer_id"], error=repr(error))
            return
        metrics.TIMERS_FIRED.labels(row["kind"]).inc()
        log.info("timer_fired", timer_id=row["timer_id"], kind=row["kind"])

    async def run(self) -> None:
        while True:
            try:
                fired = await self.fire_due()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the rows stay due; try again next tick
                log.warning("timers_failed", error=repr(error))
                fired = 0
            if fired < self.batch:
                await asyncio.sleep(self.poll_seconds)
