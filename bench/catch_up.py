"""When notifications has caught up with a burst: the work a burst leaves after its window, timed and counted.

A burst's window ends at its last `OfferSent` (fund_saga.burst_load). Notifications is off the sagas' path and runs
at a lower priority (PROCESS_NICENESS 10, README's eighteenth step), so part of its work for the burst's offers is
done after the window, where the burst's CPU a saga does not count it. The phase therefore also waits until
notifications has caught up (`caught_up`) and reports the platform's CPU from the burst's start to that moment:
a change to notifications' own work shows there, and in how long its catch-up takes (issue 10, thirty-sixth step).
"""

import asyncio
import time

import asyncpg

# Caught up: every contract offered is projected in notifications' database (each offer's OfferSent is handled
# there with its notifications, in one transaction), no email waits to be sent, and notifications' outbox is empty
# (what it wrote is published).
_OFFERED = "SELECT count(*) FROM contracts"
_NOTIFICATIONS_LEFT = """
SELECT (SELECT count(*) FROM contracts) AS projected,
       (SELECT count(*) FROM notifications WHERE status = 'pending') AS emails_pending,
       (SELECT count(*) FROM outbox) AS unpublished
"""


async def caught_up(contracts_dsn: str, notifications_dsn: str, deadline: float, poll: float = 0.05) -> float | None:
    """Seconds from the call until notifications has caught up with every offer made so far, or None at the
    deadline."""
    started = time.perf_counter()
    contracts, notifications = await asyncpg.connect(contracts_dsn), await asyncpg.connect(notifications_dsn)
    try:
        offered = await contracts.fetchval(_OFFERED)
        while time.perf_counter() - started < deadline:
            left = await notifications.fetchrow(_NOTIFICATIONS_LEFT)
            if left["projected"] >= offered and not left["emails_pending"] and not left["unpublished"]:
                return round(time.perf_counter() - started, 2)
            await asyncio.sleep(poll)
        return None
    finally:
        await contracts.close()
        await notifications.close()
