"""Writes a batch leaves for later (issue 10, ninth step), on real PostgreSQL: driver_sql.write_later.

A batch handled in one transaction without a savepoint per message lets its handlers leave a write whose answer
they do not need, or take for granted, for later: the batch's writes then go together, a run of one statement in
one pipelined round trip. What must hold: every read of the transaction sees them (through the driver, through
SQLAlchemy, at commit), in the order they were left; a rolled-back transaction writes none of them, nor leaves
them to the next one on its pooled connection; with a savepoint per message each runs at once; and a write whose
answer is not the one its handler took for granted fails the batch, which is handled again one savepoint each,
where the handler reads the answer and rejects its command alone.
"""

import uuid
from contextlib import asynccontextmanager

import asyncpg
import pytest
import pytest_asyncio
from platform_runtime import driver_sql, metrics
from platform_runtime.clock import SystemClock
from platform_runtime.consumer import BatchProcessor
from platform_runtime.dispatch import CommandDispatcher
from platform_runtime.errors import IsolationNeeded, Rejected
from platform_runtime.relay import asyncpg_dsn, notify_channel
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import new_envelope
from platform_schemas.commands.contracts import RegisterAccount
from sqlalchemy import MetaData, text

from tests.support.fakes import FakeDeadLetters, record
from tests.support.probe_service import runtime_tables_engine

pytestmark = pytest.mark.integration

ADD = "INSERT INTO notes (id, n) VALUES ($1, $2)"
BUMP = "UPDATE notes SET n = n + $2 WHERE id = $1"
CLAIM = "WITH claimed AS (INSERT INTO notes (id, n) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING id) " \
        "SELECT EXISTS (SELECT FROM claimed) AS claimed"


class Scratch:
    def __init__(self, url: str, engine, metadata: MetaData) -> None:
        self.url, self.engine, self.metadata, self.service = url, engine, metadata, f"wl{uuid.uuid4().hex[:6]}"

    def new_uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine, self.metadata.tables, self.service, SystemClock(), notify_channel(self.service))

    async def notes(self) -> dict[str, int]:
        """As another connection sees them: what is committed."""
        conn = await asyncpg.connect(asyncpg_dsn(self.url))
        try:
            return {r["id"]: r["n"] for r in await conn.fetch("SELECT id, n FROM notes")}
        finally:
            await conn.close()


@asynccontextmanager
async def first_try(scratch: Scratch):
    """A unit of work as the consumer's first try at a batch: no savepoint per message, writes left for later."""
    async with scratch.new_uow() as uow:
        uow.savepoint_per_message = False
        yield uow


@pytest_asyncio.fixture(loop_scope="session")
async def scratch(infra):
    # One connection: the pool hands the same one back to the next unit of work.
    async with runtime_tables_engine(infra.postgres_url, "later", pool_size=1, max_overflow=0) as (url, engine, metadata):
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE notes (id varchar PRIMARY KEY, n integer NOT NULL)"))
        yield Scratch(url, engine, metadata)


@pytest.fixture(autouse=True)
async def no_notes(scratch):
    async with scratch.engine.begin() as conn:
        await conn.execute(text("DELETE FROM notes"))


async def test_writes_left_for_later_are_seen_by_the_transactions_next_read_in_the_order_they_were_left(scratch):
    async with first_try(scratch) as uow:
        for i in range(5):
            assert await driver_sql.write_later(uow.session, ADD, f"n{i}", i) is None
        await driver_sql.write_later(uow.session, BUMP, "n0", 10)  # after its insert, as it was left
        await driver_sql.write_later(uow.session, ADD, "n5", 5)
        conn = await uow.driver()  # the next statement: what was left goes first
        rows = await conn.fetch("SELECT id, n FROM notes ORDER BY id")
        assert [(r["id"], r["n"]) for r in rows] == [("n0", 10), ("n1", 1), ("n2", 2), ("n3", 3), ("n4", 4), ("n5", 5)]
        assert await scratch.notes() == {}  # the transaction's, not yet committed
        await uow.commit()
    assert await scratch.notes() == {"n0": 10, "n1": 1, "n2": 2, "n3": 3, "n4": 4, "n5": 5}


async def test_a_statement_through_sqlalchemy_sees_what_was_left_before_it(scratch):
    async with first_try(scratch) as uow:
        await driver_sql.write_later(uow.session, ADD, "a", 1)
        await driver_sql.write_later(uow.session, ADD, "b", 2)
        total = await uow.session.scalar(text("SELECT sum(n) FROM notes"))
        assert total == 3


async def test_the_commit_writes_what_is_left_even_with_nothing_else_to_write(scratch):
    async with first_try(scratch) as uow:
        await driver_sql.write_later(uow.session, ADD, "only", 7)
        await uow.commit()
    assert await scratch.notes() == {"only": 7}


async def test_a_rolled_back_transaction_writes_nothing_it_left_nor_hands_it_to_the_next_on_its_connection(scratch):
    async with first_try(scratch) as uow:
        await driver_sql.write_later(uow.session, ADD, "lost", 1)
        # no commit: rolled back when the unit of work ends
    async with first_try(scratch) as uow:  # the pool's one connection again
        await driver_sql.write_later(uow.session, ADD, "kept", 2)
        await uow.commit()
    assert await scratch.notes() == {"kept": 2}


async def test_with_a_savepoint_per_message_a_write_runs_at_once_and_answers(scratch):
    async with scratch.new_uow() as uow:
        assert uow.savepoint_per_message
        answer = await driver_sql.write_later(uow.session, CLAIM, "now", 1, expect=lambda row: row["claimed"])
        assert answer["claimed"] is True
        again = await driver_sql.write_later(uow.session, CLAIM, "now", 2, expect=lambda row: row["claimed"])
        assert again["claimed"] is False  # the caller reads the answer and refuses
        await uow.commit()
    assert await scratch.notes() == {"now": 1}


async def test_a_write_left_for_later_that_answers_otherwise_than_expected_fails_the_transaction(scratch):
    async with scratch.engine.begin() as conn:
        await conn.execute(text("INSERT INTO notes VALUES ('taken', 0)"))
    async with first_try(scratch) as uow:
        for note in ("free-1", "taken", "free-2"):
            await driver_sql.write_later(uow.session, CLAIM, note, 1, expect=lambda row: row["claimed"])
        with pytest.raises(IsolationNeeded):
            await uow.commit()
    assert await scratch.notes() == {"taken": 0}


async def test_a_batch_whose_write_was_not_as_taken_for_granted_is_handled_again_and_only_that_command_rejected(
        scratch):
    """The consumer's path: the first try leaves the claims for later and fails at commit; the second, one
    savepoint per command, runs each claim at once, and the handler rejects the one refused."""
    async with scratch.engine.begin() as conn:
        await conn.execute(text("INSERT INTO notes VALUES ('a-2', 0)"))

    async def claims_its_id(cmd, ctx):
        answer = await driver_sql.write_later(ctx.uow.session, CLAIM, cmd.account_id, 1,
                                              expect=lambda row: row["claimed"])
        if answer is not None and not answer["claimed"]:
            raise Rejected("id_taken", f"{cmd.account_id} is taken")

    dispatcher = CommandDispatcher("contracts.commands", {RegisterAccount: claims_its_id}, "contracts.events")
    consumer = BatchProcessor("contracts.commands", dispatcher.dispatch, scratch.new_uow, FakeDeadLetters(), 3, 0.01)
    commands = [new_envelope(RegisterAccount(account_id=f"a-{i}", role="client", name="N", email="n@example.test"),
                             subject=f"a-{i}", actor="admin:tests", source="tests", id=f"cmd-{i}") for i in (1, 2, 3)]
    redone = metrics.BATCHES_REDONE.labels("contracts.commands")._value.get()
    await consumer.process([record(c.to_json(), i) for i, c in enumerate(commands)])
    assert metrics.BATCHES_REDONE.labels("contracts.commands")._value.get() == redone + 1
    assert await scratch.notes() == {"a-1": 1, "a-2": 0, "a-3": 1}
    conn = await asyncpg.connect(asyncpg_dsn(scratch.url))
    try:
        statuses = {r["message_id"]: r["status"] for r in await conn.fetch(
            "SELECT message_id, status FROM processed_messages")}
    finally:
        await conn.close()
    assert statuses == {"cmd-1": "accepted", "cmd-2": "rejected", "cmd-3": "accepted"}


class Tallies:
    """A kind of write left for later (driver_sql.Together) that records the runs it is asked to write."""

    merge_from = 1

    def __init__(self, gathered: bool) -> None:
        self.gathered, self.runs = gathered, []

    def alone(self, item: tuple[str, int]) -> tuple[str, tuple, None]:
        return ADD, item, None

    async def write_all(self, driver, items: list[tuple[str, int]]) -> None:
        self.runs.append([note for note, _ in items])
        await driver.executemany(ADD, items)


@pytest.mark.parametrize("gathered, runs", [(True, [["t1", "t2", "t3"]]), (False, [["t1"], ["t2", "t3"]])])
async def test_a_gathered_kinds_writes_go_as_one_run_after_the_others_wherever_they_were_left(scratch, gathered, runs):
    """Notifications' rows are left between the saves of the contracts their events name: a kind whose rows nothing
    else left for later touches is gathered into one run after the others; any other kind keeps its place."""
    tallies = Tallies(gathered)
    async with first_try(scratch) as uow:
        await driver_sql.write_together(uow.session, tallies, ("t1", 1))
        await driver_sql.write_later(uow.session, ADD, "a", 1)
        await driver_sql.write_together(uow.session, tallies, ("t2", 2))
        await driver_sql.write_together(uow.session, tallies, ("t3", 3))
        await driver_sql.write_later(uow.session, BUMP, "a", 10)
        await uow.commit()
    assert tallies.runs == runs
    assert await scratch.notes() == {"a": 11, "t1": 1, "t2": 2, "t3": 3}
