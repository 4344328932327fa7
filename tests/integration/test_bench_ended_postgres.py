"""The benchmark counts the CPU of PostgreSQL's processes that ended between two snapshots (bench/stats.py,
ENDED_POSTGRES): autovacuum workers live for less than a second, and a snapshot of running processes missed them.
A connection that works and closes in between stands in for a worker, on the real server; what it did before the
first snapshot is not counted again."""

import asyncio
import time

import asyncpg
import pytest
from platform_runtime.relay import asyncpg_dsn

from bench.stats import ENDED_POSTGRES, CpuSnapshot, _processes, process_cpu_seconds

pytestmark = pytest.mark.integration

BEFORE_SECONDS, BETWEEN_SECONDS = 1.0, 0.3  # the backend's CPU before the first snapshot, and between the two


async def _work_until(conn: asyncpg.Connection, backend: int, cpu_seconds: float) -> float:
    """Keep the backend busy until its own CPU reaches `cpu_seconds`, however busy the machine; returns it."""
    deadline = time.monotonic() + 60
    while (worked := process_cpu_seconds(backend)) < cpu_seconds:
        assert time.monotonic() < deadline, f"the backend used {worked:.2f} s of CPU in 60 s"
        await conn.fetchval("SELECT count(*) FROM generate_series(1, 200000)")
    return worked


async def test_the_cpu_of_a_connection_that_closed_between_two_snapshots_is_counted_once(infra):
    conn = await asyncpg.connect(asyncpg_dsn(infra.postgres_url.rstrip("/") + "/postgres"))
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        if backend not in _processes("postgres"):
            await conn.close()
            pytest.skip("the tests' PostgreSQL server is not this machine's (a container's, or another host's)")
        before_snapshot = await _work_until(conn, backend, BEFORE_SECONDS)
        before = CpuSnapshot.take({}, db_prefix="no_such_prefix_")
        seen = before.by_pid[backend][1]
        worked = await _work_until(conn, backend, seen + BETWEEN_SECONDS)
    finally:
        await conn.close()

    deadline = time.monotonic() + 10  # the server waits for its ended backend a moment later
    while True:
        used = CpuSnapshot.take({}, db_prefix="no_such_prefix_").since(before, wall_seconds=1.0)["cpu_seconds"]
        if used.get(ENDED_POSTGRES, 0.0) >= (worked - seen) * 0.9 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert used.get(ENDED_POSTGRES, 0.0) >= (worked - seen) * 0.9
    # Its CPU before the first snapshot is not counted again (other processes may end meanwhile: autovacuum's).
    assert before_snapshot >= BEFORE_SECONDS
    assert used[ENDED_POSTGRES] < (worked - seen) + BEFORE_SECONDS / 2
