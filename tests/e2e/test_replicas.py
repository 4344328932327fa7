"""Two processes of every service, as every deployment of two replicas runs them (the production overlay's least):
the second holds nothing in its database that the first one's work needs removed.

A session that keeps one snapshot (a statement that runs on, waiting on a lock, or a transaction left open) holds
its database's xmin horizon: no row deleted or updated after it began can be removed, by vacuum or by pruning, for
as long as it lasts. A standby outbox relay did that for the active relay's whole life, waiting inside
`pg_advisory_lock` (issue 10, twenty-eighth step); tests/integration/test_outbox_inbox.py checks the relay alone.
This checks the whole service, whatever a later change makes a replica wait for.
"""

import asyncio

import pytest
from platform_runtime.relay import application_name

from tests.support.checks import query
from tests.support.polling import eventually
from tests.support.ports import free_port
from tests.support.processes import SERVICES, available

pytestmark = pytest.mark.e2e

HELD = 3  # seconds: a services' session whose snapshot is older than this holds the database's dead rows back
# The services' sessions (client backends; autovacuum's are PostgreSQL's own) whose snapshot is older than HELD: its
# statement's start while the statement runs, its transaction's start while it is idle in one.
_HELD_SNAPSHOTS = f"""
    SELECT pid, application_name, state, backend_xmin::text AS xmin, left(query, 120) AS query
    FROM pg_stat_activity
    WHERE datname = current_database() AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()
      AND backend_type = 'client backend'
      AND now() - CASE WHEN state = 'active' THEN query_start ELSE xact_start END > interval '{HELD} seconds'"""
# Both relays of the service (one active, one a standby) connected for longer than HELD: a standby that held a
# snapshot since it began would show in _HELD_SNAPSHOTS by then.
_RELAYS_UP = f"""
    SELECT count(*) = 2 AS up FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = $1
      AND now() - backend_start > interval '{HELD} seconds'"""


async def _relays_up(platform, service: str) -> bool:
    [row] = await query(platform, service, _RELAYS_UP, application_name(service))
    return row["up"]


async def test_a_second_process_of_each_service_holds_back_no_dead_rows_in_its_database(platform):
    services = [s for s in SERVICES if available(s)]
    seconds = [platform.start(s, instance="1", port=free_port()) for s in services]
    try:
        for name in seconds:
            await platform.wait_ready(name)
        for service in services:
            await eventually(lambda s=service: _relays_up(platform, s), 60, f"two {service} outbox relays up {HELD} s")
        found = await asyncio.gather(*(query(platform, s, _HELD_SNAPSHOTS) for s in services))
    finally:
        platform.stop(seconds)  # a graceful stop takes a few seconds: all told at once
    held = {service: [dict(r) for r in rows] for service, rows in zip(services, found) if rows}
    assert not held, f"snapshots held for over {HELD} s with two processes per service: {held}"
