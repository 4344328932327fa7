"""Two processes of every service, as every deployment of two replicas runs them (the production overlay's least):
the second holds nothing in its database that the first one's work needs removed.

A session that keeps one snapshot (a statement that runs on, waiting on a lock, or a transaction left open) holds
its database's xmin horizon: no row deleted or updated after it began can be removed, by vacuum or by pruning, for
as long as it lasts. A standby outbox relay did that for the active relay's whole life, waiting inside
`pg_advisory_lock` (issue 10, twenty-eighth step); tests/integration/test_outbox_inbox.py checks the relay alone.
This checks the whole service, whatever a later change makes a replica wait for.
"""

import asyncio
import signal

import asyncpg
import pytest

from tests.support.polling import eventually
from tests.support.ports import free_port
from tests.support.processes import SERVICES, available

pytestmark = pytest.mark.e2e

WINDOW = 3.0  # seconds a snapshot must be held throughout to count as held back
# A session's snapshot, and since when it has been the same one: its statement's start while the statement runs,
# its transaction's start while it is idle in one.
_SNAPSHOTS = """
    SELECT pid, application_name, state, backend_xmin::text AS xmin,
           CASE WHEN state = 'active' THEN query_start ELSE xact_start END AS since, left(query, 120) AS query
    FROM pg_stat_activity
    WHERE datname = current_database() AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()
      AND backend_type = 'client backend'"""  # the services' sessions (autovacuum's are PostgreSQL's own)


def dsn(platform, service: str) -> str:
    return platform.database_url(service).replace("postgresql+asyncpg://", "postgresql://", 1)


async def _two_relays(platform, service: str) -> bool:
    conn = await asyncpg.connect(dsn(platform, service))
    try:
        return await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND application_name = $1", f"{service} outbox relay") == 2
    finally:
        await conn.close()


async def _held_throughout(platform, service: str) -> list[dict]:
    """The sessions of the service's database that held the same snapshot from before the window to its end."""
    conn = await asyncpg.connect(dsn(platform, service))
    try:
        first = {(r["pid"], r["xmin"], r["since"]): r for r in await conn.fetch(_SNAPSHOTS)}
        await asyncio.sleep(WINDOW)  # the window measured, not a wait for a result
        last = {(r["pid"], r["xmin"], r["since"]) for r in await conn.fetch(_SNAPSHOTS)}
    finally:
        await conn.close()
    return [dict(first[key]) for key in first.keys() & last]


async def test_a_second_process_of_each_service_holds_back_no_dead_rows_in_its_database(platform):
    services = [s for s in SERVICES if available(s)]
    seconds = [platform.start(s, instance="1", port=free_port()) for s in services]
    try:
        for name in seconds:
            await platform.wait_ready(name)
        for service in services:  # both relays connected: one active, one a standby
            await eventually(lambda s=service: _two_relays(platform, s), 60, f"two {service} outbox relays")
        held = dict(zip(services, await asyncio.gather(*(_held_throughout(platform, s) for s in services))))
    finally:  # all told at once, then each waited for: a graceful stop takes a few seconds
        for name in seconds:
            platform.procs[name].send_signal(signal.SIGTERM)
        for name in seconds:
            platform.kill(name, signal.SIGTERM)
    assert not any(held.values()), f"snapshots held for over {WINDOW} s with two processes per service: {held}"
