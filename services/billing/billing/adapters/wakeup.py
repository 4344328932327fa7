"""An asyncio.Event set by PostgreSQL's NOTIFY (platform_runtime.listener): work recorded in any instance wakes
the loops at once.

A notification whose payload is not `routine` (e.g. a refund recorded, rarer than the charges the loop looks
for on every pass) is also counted, so the loop knows to look for that work now rather than at its next poll."""

import asyncio

from platform_runtime.listener import Listener


class Wakeup:
    def __init__(self, database_url: str, channel: str, keepalive_seconds: float = 5.0, routine: str = "") -> None:
        self.routine = routine
        self.event = asyncio.Event()
        self.announced = 0  # notifications other than `routine` so far (and listens begun: anything may be due)
        self._listener = Listener(database_url, channel, self._notified, keepalive_seconds)

    def _notified(self, payload: str | None) -> None:
        if payload != self.routine:  # None: listening (re)started, anything may be due
            self.announced += 1
        self.event.set()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting; the loops' own poll covers the moments without a listener."""
        await self._listener.run()
