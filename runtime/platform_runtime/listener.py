"""LISTEN to a PostgreSQL channel on a connection of its own, calling back on each notification.

Loops that wait for work recorded in the database (billing's gateway loop, notifications' delivery) wake on
it instead of polling fast; work recorded by any instance wakes every instance. The callback also runs, with
no payload, each time listening (re)starts: whatever was committed while nobody listened may be due. A lost
connection is seen when the server closes it, or by a keep-alive query on a connection that went silent
(a dropped network path), and is opened again; the loops still poll at their interval meanwhile.
"""

import asyncio
from collections.abc import Callable

import asyncpg

from .logging import get_logger
from .relay import asyncpg_dsn

log = get_logger(__name__)


class Listener:
    def __init__(self, database_url: str, channel: str, on_notify: Callable[[str | None], None],
                 keepalive_seconds: float = 5.0, reconnect_seconds: float = 1.0) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.channel = channel
        self.on_notify = on_notify  # the notification's payload, or None when listening (re)starts
        self.keepalive_seconds = keepalive_seconds
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
            await conn.add_listener(self.channel, lambda _conn, _pid, _channel, payload: self.on_notify(payload))
            self.on_notify(None)  # what was committed while nobody listened
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self.keepalive_seconds)
                except TimeoutError:
                    await conn.execute("SELECT 1")  # a silent dead connection raises here, and is replaced
        finally:
            await conn.close(timeout=5)
