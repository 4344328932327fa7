"""The services' engine on real PostgreSQL: a connection is pinged at checkout only after it sat idle.

A connection whose server backend died is replaced silently when it was idle (the ping catches it); one in
use a moment ago is not pinged (no round trip per transaction), so its next statement fails as a disconnect,
which the consumer retries as a transient fault, and the pool's next checkout is a fresh connection.
"""

import asyncio

import asyncpg
import pytest
from platform_runtime.consumer import is_transient
from platform_runtime.database import new_engine
from sqlalchemy import text

pytestmark = pytest.mark.integration


async def _backend(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()


async def _terminate(postgres_url: str, pid: int) -> None:
    conn = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1).rstrip("/") + "/postgres")
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def test_an_idle_connection_whose_backend_died_is_replaced_at_checkout(infra):
    engine = new_engine(infra.database_url("postgres"), ping_after_idle=0.2)
    try:
        dead = await _backend(engine)
        await _terminate(infra.postgres_url, dead)
        await asyncio.sleep(0.3)
        assert await _backend(engine) != dead
    finally:
        await engine.dispose()


async def test_a_connection_in_use_a_moment_ago_is_not_pinged_and_its_loss_is_a_transient_fault(infra):
    engine = new_engine(infra.database_url("postgres"), ping_after_idle=600)
    try:
        dead = await _backend(engine)
        await _terminate(infra.postgres_url, dead)
        with pytest.raises(Exception) as failure:
            await _backend(engine)
        assert is_transient(failure.value)
        assert await _backend(engine) != dead
    finally:
        await engine.dispose()
