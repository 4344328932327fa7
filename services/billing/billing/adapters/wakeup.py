"""An asyncio.Event set by PostgreSQL's NOTIFY (platform_runtime.listener): work recorded in any instance wakes
the loops at once.

Notifications are counted, `routine` ones (a charge recorded) apart from the others (e.g. a refund recorded, rarer),
so the loop knows which work to look for now rather than at its next poll, and workers woken together by one
notification know that another one has looked already."""

import asyncio

from platform_runtime.listener import Listener

CHANNEL = "billing_gateway_work"
# The payload says what was recorded: the loop looks for due charges on every pass, for the rest when told.
CHARGE_RECORDED, OTHER_RECORDED = "charge", "other"


class Wakeup:
    def __init__(self, database_url: str, channel: str, keepalive_seconds: float = 5.0, routine: str = "") -> None:
        self.routine = routine
        self.event = asyncio.Event()
        self.announced = 0  # notifications other than `routine` so far (and listens begun: anything may be due)
        self.routine_announced = 0  # `routine` notifications so far (and listens begun)
        self._listener = Listener(database_url, channel, self._notified, keepalive_seconds)

    def _notified(self, payload: str | None) -> None:
        if payload != self.routine:  # None: listening (re)started, anything may be due
            self.announced += 1
        if payload in (self.routine, None):
            self.routine_announced += 1
        self.event.set()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting; the loops' own poll covers the moments without a listener."""
        await self._listener.run()
