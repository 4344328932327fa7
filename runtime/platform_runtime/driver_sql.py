"""The runtime's own statements on the hot path (inbox, outbox, timers), run on asyncpg directly.

Every message handled runs them, so they are the statements that run most. Through SQLAlchemy Core each one
cost more CPU in statement objects, cache keys and result processing than PostgreSQL took to run it; as fixed
SQL text on the transaction's own asyncpg connection they are prepared once per connection and cost a bind
and an execute. They run inside the unit of work's transaction (and its savepoints): `in_transaction` starts
the transaction first if SQLAlchemy has not sent its BEGIN yet (its asyncpg adapter begins lazily).

The table names are the runtime's (platform_runtime/tables.py), the same in every service's database.
"""

import re
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import groupby, product
from typing import Any, Protocol

import asyncpg
from sqlalchemy import Connection, Engine, event
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.util import await_only

from .errors import IsolationNeeded

# Connections whose transaction this module began or found begun, with their adapter: a message asks for the
# asyncpg connection many times, and reaching it through SQLAlchemy costs a greenlet switch each time.
_begun: "weakref.WeakKeyDictionary[AsyncConnection, object]" = weakref.WeakKeyDictionary()


async def in_transaction(connection: AsyncConnection | AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under `connection` (a unit of work's, or an HTTP read's session), its transaction
    begun, and the writes left for later on it (write_later) written first: what runs next sees them."""
    if isinstance(connection, AsyncSession):
        connection = await connection.connection()
    driver = await _begin(connection)
    if pending := _later.get(connection.sync_connection):
        await _write(driver, pending)
    return driver


async def _begin(connection: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under `connection`, its transaction begun.

    Relies on SQLAlchemy's asyncpg adapter (`_execute_mutex`, `_transaction`, `_start_transaction`, pinned in
    uv.lock); tests/integration/test_outbox_inbox.py checks that what runs here commits and rolls back with
    the unit of work. A connection seen before is answered from `_begun` while its transaction lasts (the
    adapter drops `_transaction` at commit and rollback).
    """
    adapted = _begun.get(connection)
    if adapted is not None and adapted._transaction is not None:
        return adapted._connection
    adapted = (await connection.get_raw_connection()).dbapi_connection
    async with adapted._execute_mutex:
        if adapted._transaction is None:
            await adapted._start_transaction()
    _begun[connection] = adapted
    return adapted._connection


# -- writes left for later -------------------------------------------------------------------------
# A batch handled in one transaction without a savepoint per message (consumer.py) may leave a write for later
# when its handler can go on without the write's answer (a saga's row, a contract's changed columns) or can
# take the answer for granted (a new contract claims its id): the batch's writes then go to PostgreSQL
# together, each run of one statement in one pipelined round trip (asyncpg's executemany, fetchmany), instead
# of a round trip per message. They are written, in the order they were left, before anything else runs on
# the connection: a statement through in_transaction, one through SQLAlchemy (the engine's
# before_cursor_execute, _write_first), and the commit (UnitOfWork.commit). So every read of the transaction
# sees them, as if they had run at once. A write that fails, or answers otherwise than its handler took for
# granted (IsolationNeeded), fails the batch, which is then handled again with a savepoint per message, where
# each write runs at once and its handler reads its answer. A kind of write can go further (Together,
# write_together): a run of its writes as one set-based statement, each table written once (escrow's holds,
# contracts' saves).
Expect = Callable[[asyncpg.Record], bool]


class Together(Protocol):
    """A kind of write whose consecutive writes left for later go to PostgreSQL as one set-based statement (see
    `write_together`), instead of one statement each, pipelined. A run shorter than `merge_from` is written one
    statement each (`alone`): for a write or two, a set-based statement's fixed cost (an array a column, its
    plan's nodes to start and end) is more than theirs (issue 10, thirty-fifth step)."""

    merge_from: int
    # True when no other kind of write left for later touches this kind's rows, and no later write of its own
    # kind depends on another kind's written first: the transaction's writes of this kind may then go after all the
    # others, as one run, wherever they were left (notifications' rows, left between the saves of the contracts
    # their events name). False keeps a write where it was left.
    gathered: bool

    def alone(self, item: Any) -> tuple[str, tuple, Expect | None]:
        """The item's own statement, its arguments and what its handler took for granted of its answer, as
        write_later leaves a write."""

    async def write_all(self, driver: asyncpg.Connection, items: list) -> None:
        """Write these items, left in this order, in one statement; raise IsolationNeeded if its answer is not
        what each item's handler took for granted."""


_later: "weakref.WeakKeyDictionary[Connection, list[tuple[str | Together, tuple, Expect | None]]]" = \
    weakref.WeakKeyDictionary()
_hooked: "weakref.WeakSet[Engine]" = weakref.WeakSet()  # engines whose statements write what is left first


def leave_writes_for_later(connection: AsyncConnection, on: bool) -> None:
    """Whether write_later may leave writes for later on this connection's transaction (off: they run at once).
    Turning it off drops what is left: the transaction has committed (which wrote it) or is rolled back."""
    if on:
        sync = connection.sync_connection
        if sync.engine not in _hooked:
            event.listen(sync.engine, "before_cursor_execute", _write_first)
            _hooked.add(sync.engine)
        _later.setdefault(sync, [])
    else:
        _later.pop(connection.sync_connection, None)


async def write_later(connection: AsyncConnection, sql: str, *args: Any,
                      expect: Expect | None = None) -> asyncpg.Record | None:
    """Run a write now, or (when the connection allows it) leave it for later: None then. With `expect`, the write
    answers one row: run now, it is returned for the caller to read; left for later, `expect` is asked of it
    then, and a row it refuses raises IsolationNeeded."""
    pending = _later.get(connection.sync_connection)
    if pending is None:
        driver = await in_transaction(connection)
        if expect is None:
            await driver.execute(sql, *args)
            return None
        return await driver.fetchrow(sql, *args)
    await _begin(connection)  # the writes are the transaction's, whatever runs them later
    pending.append((sql, args, expect))
    return None


async def write_together(connection: AsyncConnection, kind: Together, item: Any) -> asyncpg.Record | None:
    """`write_later` for an item of a kind: left for later (None), to be written by `kind` with the run of its kind
    it falls in (the writes of that kind left one after another, nothing else between them), taken for granted as
    its handler took it; or, when the connection writes at once, its own statement (`kind.alone`) run now, its
    answer returned for the caller to read when the statement answers (an `expect`), as write_later's."""
    pending = _later.get(connection.sync_connection)
    if pending is None:
        sql, args, expect = kind.alone(item)
        return await write_later(connection, sql, *args, expect=expect)
    await _begin(connection)  # as write_later
    pending.append((kind, (item,), None))
    return None


async def write_what_is_left(connection: AsyncConnection) -> None:
    if _later.get(connection.sync_connection):
        await in_transaction(connection)


async def _write(driver: asyncpg.Connection, pending: list[tuple[str | Together, tuple, Expect | None]]) -> None:
    taken = list(pending)
    pending.clear()  # taken before the first await: nothing is written twice
    if any(not isinstance(kind, str) and kind.gathered for kind, _, _ in taken):
        last = [w for w in taken if not isinstance(w[0], str) and w[0].gathered]
        taken = [w for w in taken if isinstance(w[0], str) or not w[0].gathered] + last
    for kind, run in groupby(taken, key=lambda w: w[0]):
        writes = list(run)
        if isinstance(kind, str):
            await _write_each(driver, writes)
            continue
        items = [item for _, (item,), _ in writes]
        if len(items) >= kind.merge_from:
            await kind.write_all(driver, items)
        else:
            await _write_each(driver, [kind.alone(item) for item in items])


async def _write_each(driver: asyncpg.Connection, writes: list[tuple[str, tuple, Expect | None]]) -> None:
    """Writes one statement each, a run of one statement in one pipelined round trip."""
    for (sql, answers), run in groupby(writes, key=lambda w: (w[0], w[2] is not None)):
        same = list(run)
        if not answers:
            if len(same) == 1:
                await driver.execute(sql, *same[0][1])
            else:
                await driver.executemany(sql, [args for _, args, _ in same])
            continue
        rows = await driver.fetchmany(sql, [args for _, args, _ in same])
        if len(rows) != len(same) or not all(expect(row) for (_, _, expect), row in zip(same, rows)):
            raise IsolationNeeded("a write left for later did not answer as its handler took for granted")


def _write_first(conn: Connection, cursor, statement, parameters, context, executemany) -> None:
    """Before each statement SQLAlchemy runs (its engine's before_cursor_execute): what is left for later first.
    SQLAlchemy runs it in the greenlet of the awaited call, where it may await (await_only)."""
    if pending := _later.get(conn):
        await_only(_write(conn.connection.dbapi_connection._connection, pending))


@dataclass(frozen=True)
class Fixed:
    """A SQLAlchemy statement (text or Core, its parameters typed) compiled once, at import, for the asyncpg
    connection: its text with `$n::TYPE` parameters, as SQLAlchemy's asyncpg dialect would send it, and their
    names in order. Run with `await fixed.fetch(uow.session, params)` (or fetchrow, fetchval, execute): the
    statement's CPU is a bind and an execute, without SQLAlchemy's per-call parameter processing, result wrapping
    and greenlet switch."""

    sql: str
    names: tuple[str, ...]
    # The values the statement holds itself (literals SQLAlchemy made parameters), and the types' conversions of
    # a value (JSON to text): what SQLAlchemy would apply at each execution (its compiled `_bind_processors`).
    defaults: Mapping[str, Any]
    processors: Mapping[str, Callable[[Any], Any]]

    @classmethod
    def of(cls, statement: Any, *, plan_once: bool = False) -> "Fixed":
        """`plan_once`: its array parameters hidden from the planner's estimates (see `planned_once`)."""
        compiled = statement.compile(dialect=_ASYNCPG)
        names = tuple(compiled.positiontup)
        return cls(planned_once(compiled.string) if plan_once else compiled.string, names,
                   {k: v for k, v in compiled.params.items() if v is not None},
                   {k: p for k, p in compiled._bind_processors.items() if k in names})

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values = [params[name] if name in params else self.defaults[name] for name in self.names]
        return [self.processors[name](v) if name in self.processors else v for name, v in zip(self.names, values)]

    # Run on the transaction's asyncpg connection under `connection` (a unit of work's, see in_transaction).
    async def fetch(self, connection: AsyncConnection, params: Mapping[str, Any]) -> list[asyncpg.Record]:
        return await (await in_transaction(connection)).fetch(self.sql, *self.args(params))

    async def fetchrow(self, connection: AsyncConnection, params: Mapping[str, Any]) -> asyncpg.Record | None:
        return await (await in_transaction(connection)).fetchrow(self.sql, *self.args(params))

    async def fetchval(self, connection: AsyncConnection, params: Mapping[str, Any]) -> Any:
        return await (await in_transaction(connection)).fetchval(self.sql, *self.args(params))

    async def execute(self, connection: AsyncConnection, params: Mapping[str, Any]) -> None:
        await (await in_transaction(connection)).execute(self.sql, *self.args(params))


_ASYNCPG = asyncpg_dialect.dialect()


# -- one plan per statement ----------------------------------------------------------------------------
# PostgreSQL plans a prepared statement again at each execution (a custom plan) for as long as a plan made for
# the parameters' values is estimated cheaper than its generic plan. For an array parameter the planner counts
# the array's elements (unnest, `= ANY`): a lone message's one-element arrays always estimate cheaper than the
# generic plan's guess of ten, so the runtime's hot statements were planned at every execution, and planning
# took half as much of the databases' time as running them (issue 10, twenty-second step). Read through a scalar
# subquery an array's length is unknown to both plans alike, and after its fifth execution PostgreSQL keeps the
# generic plan (plancache.c, choose_custom_plan). Only for statements whose plan does not depend on how many
# elements come: an index probe or a hash per element (tests/integration/test_generic_plans.py checks the plans
# and that PostgreSQL keeps them).
# A type as SQLAlchemy writes it too: `VARCHAR(64)`, `NUMERIC(12, 2)`, `TIMESTAMP WITH TIME ZONE`.
_ARRAY_PARAMETER = re.compile(r"\$(\d+)::(\w+(?:\(\d+(?:, ?\d+)?\))?(?: \w+)*)\[\]")


def planned_once(sql: str) -> str:
    """`sql` with each array parameter `$n::type[]` read as `(SELECT $n::type[])::type[]`."""
    return _ARRAY_PARAMETER.sub(r"(SELECT $\1::\2[])::\2[]", sql)


# One round trip for both answers: `claimed` is the id when the row is new; `seen` is the fingerprint of the
# row that was there before (the SELECT sees the statement's snapshot, not the CTE's insert).
CLAIM = """
WITH claimed AS (
    INSERT INTO processed_messages (message_id, type, subject, actor, fingerprint, status, processed_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING message_id)
SELECT (SELECT message_id FROM claimed) AS claimed,
       (SELECT fingerprint FROM processed_messages WHERE message_id = $1) AS seen
"""

# A batch's claims in one statement: for each distinct id, whether this statement inserted it, else the
# fingerprint of the row that was there (NULL when another transaction committed it while this one waited on
# the index: not in this statement's snapshot; that message's own claim looks again). Then, in the same
# statement, the answers kept under the keys $8 (a participant's steps answered as failed before: rows with
# `claimed` NULL), which the batch's handlers would otherwise each look up in a round trip of their own.
CLAIM_ALL = planned_once("""
WITH claimed AS (
    INSERT INTO processed_messages (message_id, type, subject, actor, fingerprint, status, processed_at)
    SELECT id, type, subject, actor, fingerprint, $6, $7
    FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[])
         AS m(id, type, subject, actor, fingerprint)
    ON CONFLICT DO NOTHING RETURNING message_id)
SELECT m.id, c.message_id IS NOT NULL AS claimed, p.fingerprint AS seen, NULL::jsonb AS outcome
FROM unnest($1::varchar[]) AS m(id)
LEFT JOIN claimed c ON c.message_id = m.id
LEFT JOIN processed_messages p ON p.message_id = m.id
UNION ALL
SELECT message_id, NULL, NULL, outcome FROM processed_messages WHERE message_id = ANY($8::varchar[])
""")

# Answers kept under keys of their own (UnitOfWork.remember), e.g. the saga steps answered as failed.
RECORDED = planned_once("SELECT message_id, outcome FROM processed_messages WHERE message_id = ANY($1::varchar[])")


def write_at_commit(cancel: bool, schedule: bool, statuses: bool, outbox: bool) -> str:
    """One statement for what a transaction queued for its commit: timers cancelled, timers scheduled, commands'
    statuses, outbox rows and the relay's NOTIFY. Data-modifying CTEs run to completion whether or not the query
    reads them, and all see the snapshot of the statement's start: a timer cancelled here is one committed before
    (the ones this transaction scheduled and then cancelled were dropped before they were written, see
    UnitOfWork.cancel_timers), never one this statement inserts. Its parameters, in this order, are those of the
    parts it has: cancel (cancelled_at, subjects[], kinds[]), schedule (timer_id[], kind[], subject[], due_at[],
    payload[], correlation_id[]), statuses (message_id[], status[], outcome[]), outbox (event_id[], topic[], key[],
    type[], payload[], notify channel)."""
    return _WRITE_AT_COMMIT[(cancel, schedule, statuses, outbox)]


# A timer locked by a runner is firing right now: skipped (see UnitOfWork.cancel_timers). One index probe per
# (subject, kind), whatever the statistics say: a subquery with FOR UPDATE is never flattened into a join, and
# its predicate is timers_pending_by_subject's own (tables.py), which timers_pending's does not match. Written as
# a join of all pending timers, it was planned as a scan of every one of them per statement when the last
# analyze had seen few (a burst of 5,000 sagas: 23 ms a statement, a fifth of the databases' execution time).
_CANCEL = """cancelled AS (
    UPDATE timers SET cancelled_at = ${0} WHERE timer_id IN (
        SELECT pending.timer_id
        FROM unnest(${1}::varchar[], ${2}::varchar[]) AS k(subject, kind),
        LATERAL (SELECT timer_id FROM timers
                 WHERE subject = k.subject AND kind = k.kind AND coalesce(fired_at, cancelled_at) IS NULL
                 FOR UPDATE SKIP LOCKED) AS pending)
    RETURNING 1)"""
_SCHEDULE = """scheduled AS (
    INSERT INTO timers (timer_id, kind, subject, due_at, payload, correlation_id)
    SELECT * FROM unnest(${0}::varchar[], ${1}::varchar[], ${2}::varchar[], ${3}::timestamptz[], ${4}::jsonb[],
                         ${5}::varchar[])
    ON CONFLICT DO NOTHING RETURNING 1)"""
# Commands' final statuses; a command claimed earlier in this transaction is in the statement's snapshot.
_STATUSES = """statuses AS (
    UPDATE processed_messages p SET status = s.status, outcome = s.outcome
    FROM unnest(${0}::varchar[], ${1}::varchar[], ${2}::jsonb[]) AS s(message_id, status, outcome)
    WHERE p.message_id = s.message_id
    RETURNING 1)"""
# WITH ORDINALITY keeps the rows' order in `seq` (commit order per subject is what the relay publishes by).
_OUTBOX = """written AS (
    INSERT INTO outbox (event_id, topic, key, type, payload)
    SELECT event_id, topic, key, type, payload
    FROM unnest(${0}::varchar[], ${1}::varchar[], ${2}::varchar[], ${3}::varchar[], ${4}::bytea[])
         WITH ORDINALITY AS r(event_id, topic, key, type, payload, n)
    ORDER BY n
    RETURNING 1)"""


def _statement(cancel: bool, schedule: bool, statuses: bool, outbox: bool) -> str:
    parts, numbered = [], 0
    for part, count, wanted in ((_CANCEL, 3, cancel), (_SCHEDULE, 6, schedule), (_STATUSES, 3, statuses),
                                (_OUTBOX, 5, outbox)):
        if wanted:
            parts.append(part.format(*(f"{numbered + i + 1}" for i in range(count))))
            numbered += count
    final = f"SELECT pg_notify(${numbered + 1}, '')" if outbox else "SELECT 1"
    return ("WITH " + ",\n".join(parts) + "\n" if parts else "") + final


_WRITE_AT_COMMIT = {flags: planned_once(_statement(*flags)) for flags in product((False, True), repeat=4)}
