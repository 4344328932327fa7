"""LISTEN to a PostgreSQL channel on a connection of its own, calling back on each notification.

The delivery loops wake on it when an email is inserted (in this instance or another), instead of
polling fast. A lost connection is opened again; meanwhile the loops still poll at their interval.
"""

import asyncio
from collections.abc import Callable

import asyncpg

from platform_runtime.logging import get_logger
from platform_runtime.relay import asyncpg_dsn

log = get_logger(__name__)


class Listener:
    def __init__(self, database_url: str, channel: str, on_notify: Callable[[], None],
                 reconnect_seconds: float = 1.0) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.channel = channel
        self.on_notify = on_notify
        self.reconnect_seconds = reconnect_seconds

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - connect again; the loops poll meanwhile
                log.warning("listener_restarting", channel=self.channel, error=repr(error))
            await asyncio.sleep(self.reconnect_seconds)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda *_: lost.set())
            await conn.add_listener(self.channel, lambda *_: self.on_notify())
            self.on_notify()  # what was committed while nobody listened
            await lost.wait()
        finally:
            await conn.close(timeout=5)
