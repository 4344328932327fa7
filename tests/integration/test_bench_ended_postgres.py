"""The benchmark counts the CPU of PostgreSQL's processes that ended between two snapshots (bench/stats.py,
ENDED_POSTGRES): autovacuum workers live for less than a second, and a snapshot of running processes missed them.
A connection that works and closes in between stands in for a worker, on the real server."""

import asyncio
import time

import asyncpg
import pytest
from platform_runtime.relay import asyncpg_dsn

from bench.stats import ENDED_POSTGRES, CpuSnapshot, _processes, process_cpu_seconds

pytestmark = pytest.mark.integration

WORK_SECONDS = 0.3


async def test_the_cpu_of_a_connection_that_closed_between_two_snapshots_is_counted(infra):
    if not any(not cmdline.startswith("postgres:") for cmdline in _processes("postgres").values()):
        pytest.skip("the PostgreSQL server is not on this machine")
    before = CpuSnapshot.take({}, db_prefix="no_such_prefix_")
    conn = await asyncpg.connect(asyncpg_dsn(infra.postgres_url.rstrip("/") + "/postgres"))
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        while (worked := process_cpu_seconds(backend)) < WORK_SECONDS:  # the backend's CPU, however busy the machine
            await conn.fetchval("SELECT count(*) FROM generate_series(1, 200000)")
    finally:
        await conn.close()

    deadline = time.monotonic() + 10  # the server waits for its ended backend a moment later
    while True:
        used = CpuSnapshot.take({}, db_prefix="no_such_prefix_").since(before, wall_seconds=1.0)["cpu_seconds"]
        if used.get(ENDED_POSTGRES, 0.0) >= worked * 0.9 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert used.get(ENDED_POSTGRES, 0.0) >= worked * 0.9
