"""Faults classified by SQLSTATE (issue 9, item 4), with the exceptions the real stack raises: asyncpg's
own classes, adapted and wrapped exactly as SQLAlchemy's asyncpg dialect does. (The integration test
tests/integration/test_faults_real.py provokes the same faults on the real server.)"""

import asyncpg
import pytest
from platform_runtime.errors import TransientError
from platform_runtime.faults import TransientFaults, is_transient, sqlstate_of
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection, AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError

from tests.support.fakes import FakeDeadLetters, FakeStore, record
from tests.unit.test_consumer import announced, processor, raw, register

pytestmark = pytest.mark.unit
_DBAPI = AsyncAdapt_asyncpg_dbapi(asyncpg)


def as_sqlalchemy_raises(error: Exception) -> DBAPIError:
    """asyncpg's exception -> the dialect's adapted DBAPI error (raised `from` it) -> SQLAlchemy's wrapper."""
    try:
        try:
            raise error
        except Exception as raised:
            AsyncAdapt_asyncpg_connection._handle_exception_no_connection(_DBAPI, raised)
    except Exception as adapted:
        return DBAPIError.instance("SELECT 1", {}, adapted, _DBAPI.Error)
    raise AssertionError("the dialect did not translate the error")


E = asyncpg.exceptions
TRANSIENT = [
    E.CannotConnectNowError("the database system is starting up"),  # 57P03
    E.AdminShutdownError("terminating connection due to administrator command"),  # 57P01
    E.CrashShutdownError("terminating connection because of crash of another server process"),  # 57P02
    E.TooManyConnectionsError("sorry, too many clients already"),  # 53300
    E.DeadlockDetectedError("deadlock detected"),  # 40P01
    E.SerializationError("could not serialize access due to concurrent update"),  # 40001
    E.LockNotAvailableError("canceling statement due to lock timeout"),  # 55P03
    E.ConnectionFailureError("connection failure"),  # 08006
    E.ConnectionDoesNotExistError("connection was closed in the middle of operation"),  # 08003
]
PERMANENT = [
    E.UniqueViolationError("duplicate key value violates unique constraint"),  # 23505
    E.CheckViolationError("new row violates check constraint"),  # 23514
    E.NumericValueOutOfRangeError("bigint out of range"),  # 22003
    E.StringDataRightTruncationError("value too long for type character varying(64)"),  # 22001
    E.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00"),  # 22021
    E.UndefinedTableError("relation does not exist"),  # 42P01
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: f"{type(e).__name__}-{e.sqlstate}")
def test_faults_of_the_database_are_transient_as_sqlalchemy_raises_them(error):
    wrapped = as_sqlalchemy_raises(error)
    assert sqlstate_of(wrapped) == error.sqlstate
    assert is_transient(wrapped)
    assert is_transient(error)


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: f"{type(e).__name__}-{e.sqlstate}")
def test_faults_a_message_can_cause_are_not_transient(error):
    assert not is_transient(as_sqlalchemy_raises(error))


def test_the_class_sqlalchemy_picks_does_not_decide():
    """Both a deadlock and a unique violation may come wrapped as the same DBAPIError subclass."""
    deadlock, duplicate = as_sqlalchemy_raises(TRANSIENT[4]), as_sqlalchemy_raises(PERMANENT[0])
    assert is_transient(deadlock) and not is_transient(duplicate)


@pytest.mark.parametrize("error,transient", [
    (ConnectionRefusedError(), True),
    (TransientError("gateway unavailable"), True),
    (RuntimeError("bug"), False),
])
def test_faults_without_a_sqlstate(error, transient):
    assert is_transient(error) is transient


async def test_a_restarting_database_is_waited_out_without_dead_letters_and_readiness_is_red_meanwhile():
    store, dead = FakeStore(), FakeDeadLetters()
    faults_seen: list[bool] = []
    down = [as_sqlalchemy_raises(e) for e in TRANSIENT[:4]] * 2  # more than max_attempts, all transient

    async def handler(cmd, ctx):
        faults_seen.append(batch.faults.ok)
        if down:
            raise down.pop(0)
        from platform_schemas.events.contracts import AccountRegistered
        ctx.uow.publish("contracts.events", AccountRegistered(account_id=cmd.account_id, role=cmd.role, name=cmd.name,
                                                          email=cmd.email), subject=cmd.account_id)

    batch = processor(handler, store, dead, max_attempts=2)
    await batch.process([record(raw(register()), 0)])
    assert dead.sent == [] and announced(store) == ["a-1"]
    assert faults_seen[0] is True and not any(faults_seen[1:-1]) and len(faults_seen) == 9
    assert batch.faults.ok  # green again once the database answered


def test_transient_faults_state():
    faults = TransientFaults()
    faults.failed(as_sqlalchemy_raises(TRANSIENT[0]))
    assert not faults.ok and faults.last_error.startswith("57P03")
    faults.recovered()
    assert faults.ok
