"""The faults of issue 9 item 4 provoked on the real PostgreSQL server, through SQLAlchemy + asyncpg as the
services run it: each is classified transient by its SQLSTATE; a constraint violation is not."""

import asyncio
import uuid

import pytest
import pytest_asyncio
from platform_runtime.faults import is_transient, sqlstate_of
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.probe_service import drop_database, scratch_database
from tests.support.processes import DB_PREFIX

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra):
    name = f"{DB_PREFIX}it_faults_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(infra.postgres_url, name)
    engine = create_async_engine(url, pool_size=4)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id int PRIMARY KEY, v int)"))
        await conn.execute(text("INSERT INTO t VALUES (1, 0), (2, 0)"))
    yield engine, url
    await engine.dispose()
    await drop_database(infra.postgres_url, name)


async def caught(work) -> BaseException:
    try:
        await work
    except Exception as error:  # noqa: BLE001
        return error
    raise AssertionError("no error")


async def test_a_deadlock_is_transient(db):
    engine, _ = db
    async with engine.connect() as a, engine.connect() as b:
        await a.begin()
        await b.begin()
        await a.execute(text("UPDATE t SET v = 1 WHERE id = 1"))
        await b.execute(text("UPDATE t SET v = 1 WHERE id = 2"))
        first = asyncio.create_task(a.execute(text("UPDATE t SET v = 2 WHERE id = 2")))
        await asyncio.sleep(0.1)
        second = asyncio.create_task(b.execute(text("UPDATE t SET v = 2 WHERE id = 1")))
        results = await asyncio.gather(first, second, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1 and sqlstate_of(errors[0]) == "40P01" and is_transient(errors[0])


async def test_a_serialization_failure_is_transient(db):
    engine, _ = db
    async with engine.connect() as a, engine.connect() as b:
        await a.execute(text("BEGIN ISOLATION LEVEL REPEATABLE READ"))
        await a.execute(text("SELECT v FROM t WHERE id = 1"))
        async with b.begin():
            await b.execute(text("UPDATE t SET v = v + 1 WHERE id = 1"))
        error = await caught(a.execute(text("UPDATE t SET v = v + 1 WHERE id = 1")))
        assert sqlstate_of(error) == "40001" and is_transient(error)


async def test_a_lock_timeout_is_transient(db):
    engine, _ = db
    async with engine.connect() as a, engine.connect() as b:
        await a.begin()
        await a.execute(text("SELECT * FROM t WHERE id = 1 FOR UPDATE"))
        await b.begin()
        await b.execute(text("SET LOCAL lock_timeout = '50ms'"))
        error = await caught(b.execute(text("SELECT * FROM t WHERE id = 1 FOR UPDATE")))
        assert sqlstate_of(error) == "55P03" and is_transient(error)


async def test_a_connection_terminated_by_the_server_is_transient(db):
    engine, _ = db
    async with engine.connect() as victim, engine.connect() as admin:
        pid = (await victim.execute(text("SELECT pg_backend_pid()"))).scalar()
        await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        error = await caught(victim.execute(text("SELECT 1")))
        assert is_transient(error), repr(error)


async def test_too_many_connections_is_transient(db):
    engine, url = db
    role, password = f"limited_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex  # TCP logins need a password (SCRAM)
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0 PASSWORD '{password}'"))
    limited = create_async_engine(make_url(url).set(username=role, password=password))
    try:
        error = await caught(limited.connect().__aenter__())
        assert sqlstate_of(error) == "53300" and is_transient(error)
    finally:
        await limited.dispose()
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP ROLE {role}"))


async def test_a_constraint_violation_is_the_messages_fault(db):
    engine, _ = db
    async with engine.connect() as conn:
        error = await caught(conn.execute(text("INSERT INTO t VALUES (1, 0)")))
        assert sqlstate_of(error) == "23505" and not is_transient(error)
