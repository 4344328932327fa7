"""An asyncio.Event set by PostgreSQL's NOTIFY: work recorded in any instance wakes the loops at once.

A notification whose payload is not `routine` (e.g. a refund recorded, rarer than the charges the loop looks
for on every pass) is also counted, so the loop knows to look for that work now rather than at its next poll."""

import asyncio

import asyncpg

from platform_runtime.logging import get_logger
from platform_runtime.relay import asyncpg_dsn

log = get_logger(__name__)


class Wakeup:
    def __init__(self, database_url: str, channel: str, keepalive_seconds: float = 5.0, routine: str = "") -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.channel = channel
        self.keepalive_seconds = keepalive_seconds
        self.routine = routine
        self.event = asyncio.Event()
        self.announced = 0  # notifications other than `routine` so far (and listens begun: anything may be due)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload != self.routine:
            self.announced += 1
        self.event.set()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting; the loops' own poll covers the moments without a listener."""
        while True:
            try:
                conn = await asyncpg.connect(self.dsn)
                try:
                    await conn.add_listener(self.channel, self._notified)
                    self.announced += 1
                    self.event.set()  # whatever was recorded while nobody listened
                    while True:  # a dead connection raises here, and is replaced
                        await asyncio.sleep(self.keepalive_seconds)
                        await conn.execute("SELECT 1")
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - listen again; the poll is the safety net meanwhile
                log.warning("wakeup_listener_lost", channel=self.channel, error=repr(error))
                await asyncio.sleep(1.0)
