"""Outbox relay: publishes committed outbox rows to Kafka in commit order, then deletes them.

One active relay per service: it holds a PostgreSQL advisory lock on its own connection; standbys try the
same lock every `standby_poll` (RELAY_STANDBY_POLL, 1 s) and take over within that time of the holder's
connection dying. A standby never waits inside `pg_advisory_lock`: a statement waiting on a lock holds its
snapshot, and with it the xmin horizon of the whole database, so for as long as a standby waited (the active
relay's life) no dead row of any table there could be removed, by vacuum or by pruning. The outbox, whose rows
are all deleted, grew dead rows that every relay pass walked again: found with two contracts processes in the
benchmark, a pass read about 320 pages at 20 offers/s and 1,800-2,000 at 100/s, where with one process it was
not among the costly statements (issue 10, twenty-eighth step). Between its tries a standby's connection is
idle and holds nothing. It wakes on
LISTEN/NOTIFY (sent by the committing transaction), not on a sleep loop. Crashing between publish
and delete means the rows are published again with the same CloudEvents id: consumers de-duplicate.
The rows a pass published are deleted by the next pass's read, in the same statement, when that pass
follows within `delete_delay` (under load, and at any rate above a few messages a second); else on their own.

The relay's own writes are those deletes, and its connection commits them without waiting for the WAL flush
(`synchronous_commit = off` for that session alone, `RELAY_SESSION`). A crash of the database server may then forget
the last few hundred milliseconds of deletes: those rows are published again with the same ids, as after a relay
crash between publish and delete. Nothing else is lost (WAL is sequential: a later synchronous commit flushes the
deletes before it), and every transaction that changes state, money first, keeps `synchronous_commit = on`. What it
buys: a pass, whose statement deletes the last pass's rows, no longer waits for a flush before it publishes the
next ones (issue 10, twentieth step: at 100 offers/s the p50 fell by about a fifth).

Published rows are deleted, not kept with a `sent_at`: nothing reads them again (Kafka is the record of what
was published), an UPDATE rewrote each ~1 KB row and all three of its indexes (17 us of the server's CPU a row
against 2.4 us for the DELETE, measured), and kept rows grew the table without bound. `sent_at IS NULL` still
means unpublished, so the backlog gauges and the partial index stay as they are.
"""

import asyncio
import time
import zlib
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from . import metrics
from .driver_sql import planned_once
from .logging import get_logger

log = get_logger(__name__)
HEADERS = [("content-type", b"application/cloudevents+json")]


def headers(event_type: str) -> list[tuple[str, bytes]]:
    """Structured mode, plus the event's type as the `ce_type` header: a consumer skips the types it does not
    handle without parsing the value (the value stays the whole envelope, so readers of it see no change)."""
    return [*HEADERS, ("ce_type", event_type.encode())]


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


# The relay's session: see the module's docstring. Only ever this connection's; never the units of work's.
RELAY_SESSION = {"synchronous_commit": "off"}


def application_name(service: str) -> str:
    """What a relay's connection is called in pg_stat_activity, for operators (and the tests) to find it."""
    return f"{service} outbox relay"


async def relay_connection(dsn: str, service: str = "") -> asyncpg.Connection:
    """The relay's own connection, named by `application_name` when the service is given."""
    named = {"application_name": application_name(service)} if service else {}
    return await asyncpg.connect(dsn, server_settings={**RELAY_SESSION, **named})


class OutboxRelay:
    def __init__(self, database_url: str, producer: AIOKafkaProducer, service: str,
                 batch_size: int, idle_check: float = 5.0, delete_delay: float = 0.5,
                 standby_poll: float = 1.0) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.producer = producer
        self.service = service
        self.channel = notify_channel(service)
        self.lock_key = zlib.crc32(f"outbox-relay:{service}".encode())
        self.batch_size = batch_size
        self.idle_check = idle_check
        # How long published rows may wait for the next pass to delete them (a crash meanwhile republishes them,
        # with the same ids: consumers recognise them).
        self.delete_delay = delete_delay
        self.standby_poll = standby_poll  # how often a standby tries the lock (see the module's docstring)
        self._wake = asyncio.Event()
        self._stopping = False
        self.active = False  # holds the lock (a standby has no pass to finish)
        self.failing: dict[int, FailingRow] = {}  # rows the broker refused, by seq: retried with backoff
        self.published: list[int] = []  # published, not yet deleted (see publish_pending)

    def stop(self) -> None:
        """Finish the pass in progress (publish and delete), then return: a graceful stop republishes nothing."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Run until stopped or cancelled, surviving lost connections."""
        while not self._stopping:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - reconnect and go on
                metrics.RELAY_ACTIVE.set(0)
                log.warning("relay_restarting", error=repr(error))
                await asyncio.sleep(1.0)

    async def _run_once(self) -> None:
        conn = await relay_connection(self.dsn, self.service)
        try:
            if not await self._lock_taken(conn):
                return  # stopped while a standby
            metrics.RELAY_ACTIVE.set(1)
            self.active = True
            log.info("relay_active")
            await conn.add_listener(self.channel, lambda *_: self._wake.set())
            while not self._stopping:
                self._wake.clear()
                if await self.publish_pending(conn) == self.batch_size:
                    continue
                # Nothing more for now. The rows just sent are deleted by the next pass's read if a commit wakes the
                # relay soon (at low rates that saves a statement and a commit per pass), else after delete_delay.
                if self.published and not await self._woken_within(self.delete_delay):
                    await self.delete_published(conn)
                if not self._wake.is_set():
                    await self._woken_within(self.idle_check)
            await self.delete_published(conn)
        finally:
            metrics.RELAY_ACTIVE.set(0)
            self.active = False
            await conn.close()

    async def _lock_taken(self, conn: asyncpg.Connection) -> bool:
        """Try the lock until it is this relay's (True) or the relay stops (False). Tried, never waited for inside
        the database: see the module's docstring."""
        while True:
            self._wake.clear()  # stop() sets it after _stopping: checked below, after the clear
            if self._stopping:
                return False
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.lock_key):
                return True
            await self._woken_within(self.standby_poll)

    async def _woken_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
            return True
        except TimeoutError:
            return False

    async def publish_pending(self, conn: asyncpg.Connection) -> int:
        """One pass: publish the unsent rows in commit order; those the broker took are deleted by the next pass.

        A row the broker (or the producer) refuses does not hold the others back: it is reported with its
        id, kept unsent and tried again with backoff, and only the later rows of its own subject (its Kafka
        key, hence its partition) wait behind it, so per-subject order holds.
        """
        now = time.monotonic()
        due = [seq for seq, f in self.failing.items() if f.next_try <= now]
        held_keys = sorted({f.key for f in self.failing.values()})
        done, self.published = self.published, []
        rows = await conn.fetch(_DELETE_AND_FETCH, self.batch_size, held_keys, due, done)
        if done:
            metrics.RELAYED.inc(len(done))
        if not rows:
            return 0
        # The idempotent producer keeps per-partition order across its in-flight requests, so sending every
        # batch before waiting keeps commit order per subject (= key = partition).
        batches = _PartitionBatches(self.producer)
        held: set[str] = set()
        for r in rows:
            if r["key"] in held:
                continue  # behind a row of its subject that just failed: waits for it
            try:
                await batches.add(r)
            except KafkaError as error:  # refused before sending (e.g. MessageSizeTooLargeError)
                self._failed(r, error)
                held.add(r["key"])
        in_flight = await batches.send_all()
        results = await asyncio.gather(*(f for _, f in in_flight), return_exceptions=True)
        sent = []
        for (batch_rows, _), result in zip(in_flight, results):
            for r in batch_rows:
                if isinstance(result, BaseException):
                    self._failed(r, result)
                    continue
                sent.append(r["seq"])
                if self.failing.pop(r["seq"], None) is not None:
                    log.info("outbox_row_published_after_failures", seq=r["seq"], event_id=r["event_id"])
        self.published.extend(sent)  # deleted by the next pass's statement, or by delete_published when none follows at once
        return len(rows)

    async def delete_published(self, conn: asyncpg.Connection) -> None:
        """Delete the rows published but not yet deleted (a crash before this publishes them again, same ids)."""
        if self.published:
            done, self.published = self.published, []
            await conn.execute(_DELETE, done)
            metrics.RELAYED.inc(len(done))

    def _failed(self, row, error: BaseException) -> None:
        previous = self.failing.get(row["seq"])
        attempts = previous.attempts + 1 if previous else 1
        self.failing[row["seq"]] = FailingRow(row["key"], attempts,
                                              time.monotonic() + min(0.5 * 2 ** (attempts - 1), 30.0), repr(error))
        metrics.RELAY_ROW_FAILURES.labels(row["topic"]).inc()
        log.error("outbox_row_publish_failed", seq=row["seq"], event_id=row["event_id"], topic=row["topic"],
                  key=row["key"], attempts=attempts, error=repr(error))


# Under load a pass follows the last at once: it deletes the rows the last one published in the same round trip
# as it reads the next ones. The SELECT sees the snapshot before the DELETE, so it leaves those rows out itself:
# with `NOT IN (SELECT unnest(...))`, a hashed subplan, not `seq <> ALL($4)`, which compares each row with the whole
# array (2,000 x 2,000 for a full pass: 43-57 ms a pass against 14 ms, measured on 60,000 rows of 1 KB).
_DELETE_AND_FETCH = planned_once("""
WITH published AS (DELETE FROM outbox WHERE seq = ANY($4::bigint[]) RETURNING seq)
SELECT seq, event_id, topic, key, type, payload FROM outbox
WHERE sent_at IS NULL AND seq NOT IN (SELECT unnest($4::bigint[]))
  AND (key <> ALL($2::text[]) OR seq = ANY($3::bigint[]))
ORDER BY seq LIMIT $1
""")
_DELETE = planned_once("DELETE FROM outbox WHERE seq = ANY($1::bigint[])")


class _PartitionBatches:
    """A pass's rows as one produce batch per partition (more where one passes the producer's batch size).

    `send()` per row cost 20-24 us of CPU (a future, the accumulator, the partitioner each time) against
    8-11 us for rows appended to a batch (measured, 20,000 rows of 900 bytes): the relay of a bonus batch
    publishes three events per bonus. A batch the broker refuses fails all its rows; each is retried alone."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.open: dict[tuple[str, int], tuple[Any, list]] = {}  # (topic, partition) -> (builder, its rows)
        self.full: list[tuple[tuple[str, int], Any, list]] = []
        self._partitions: dict[tuple[str, bytes], int] = {}
        # aiokafka has no public getter; send() refuses a record over it before sending, as this does.
        self.max_request_size = getattr(producer, "_max_request_size", 1_048_576)

    async def add(self, row) -> None:
        key, value, row_headers = row["key"].encode(), row["payload"], headers(row["type"])
        if len(value) + len(key) > self.max_request_size // 2:  # the exact size only where it may matter
            size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, row_headers)
            if size > self.max_request_size:
                raise MessageSizeTooLargeError(f"The message is {size} bytes when serialized which is larger than "
                                               f"the maximum request size {self.max_request_size}")
        where = (row["topic"], await self._partition(row["topic"], key))
        builder, batch_rows = self.open.get(where) or self._start(where)
        if builder.append(key=key, value=value, timestamp=None, headers=row_headers) is None:  # full
            self.full.append((where, builder, batch_rows))
            builder, batch_rows = self._start(where)
            if builder.append(key=key, value=value, timestamp=None, headers=row_headers) is None:
                raise KafkaError("an empty produce batch refused the record")  # never silently dropped
        batch_rows.append(row)

    def _start(self, where: tuple[str, int]) -> tuple[Any, list]:
        self.open[where] = (self.producer.create_batch(), [])
        return self.open[where]

    async def _partition(self, topic: str, key: bytes) -> int:
        """The partition send() would choose for this key (the producer's own partitioner), once per key."""
        known = self._partitions.get((topic, key))
        if known is None:
            await self.producer.client._wait_on_metadata(topic)  # noqa: SLF001 - as send() does
            known = self._partitions[(topic, key)] = self.producer._partition(  # noqa: SLF001
                topic, None, None, None, key, None)
        return known

    async def send_all(self) -> list[tuple[list, asyncio.Future]]:
        """Every batch handed to the producer, in the order filled (per partition: in commit order)."""
        out = []
        for (topic, partition), builder, batch_rows in [*self.full, *((w, b, r) for w, (b, r) in self.open.items())]:
            try:
                future = await self.producer.send_batch(builder, topic, partition=partition)
            except KafkaError as error:
                future = asyncio.get_running_loop().create_future()
                future.set_exception(error)
            out.append((batch_rows, future))
        return out


@dataclass
class FailingRow:
    key: str
    attempts: int
    next_try: float  # time.monotonic()
    error: str


def notify_channel(service: str) -> str:
    return f"outbox_{service}"


def new_producer(bootstrap: str, linger_ms: int, client_id: str, max_batch_size: int = 16384,
                 **security) -> AIOKafkaProducer:
    """`security`: kafka_security.client_options of the service's settings."""
    # enable_idempotence forces acks=all: durable, and no duplicates from the producer's own retries.
    return AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                            linger_ms=linger_ms, client_id=client_id, max_batch_size=max_batch_size, **security)
