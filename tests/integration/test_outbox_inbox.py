"""The outbox relay and the inbox on real PostgreSQL and Kafka (the runtime alone, on a scratch database).

The relay: commit order per subject, the row id is the CloudEvents id, rows are marked sent, one
active relay per service with a standby that takes over, LISTEN/NOTIFY instead of polling.
The inbox: its row is written in the handler's transaction, so a rolled-back handler leaves none.
The in-memory FakeUnitOfWork of the unit tests passes the same inbox tests as the real one.
"""

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest
import pytest_asyncio
from platform_runtime import driver_sql
from platform_runtime.clock import SystemClock
from platform_runtime.consumer import BatchProcessor
from platform_runtime.dispatch import CommandDispatcher
from platform_runtime.errors import Rejected
from platform_runtime.relay import (OutboxRelay, application_name, asyncpg_dsn, new_producer, notify_channel,
                                    relay_connection)
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope, new_envelope
from platform_schemas.commands.contracts import RegisterAccount
from platform_schemas.events.contracts import AccountRegistered
from sqlalchemy import MetaData, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.support.fakes import FakeDeadLetters, FakeStore, FakeUnitOfWork, record
from tests.support.probe_service import create_topics, read_topic, runtime_tables_engine

pytestmark = pytest.mark.integration


@dataclass
class Scratch:
    """A scratch database with the runtime's tables, and a service name of its own."""

    url: str
    service: str
    topic: str
    metadata: MetaData
    engine: AsyncEngine

    def new_uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine, self.metadata.tables, self.service, SystemClock(), notify_channel(self.service))

    def session_factory(self) -> AsyncSession:
        return async_sessionmaker(self.engine, expire_on_commit=False)()

    async def fetch(self, sql: str, *args):
        conn = await asyncpg.connect(asyncpg_dsn(self.url))
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()


@pytest_asyncio.fixture(loop_scope="session")
async def scratch(infra):
    suffix = uuid.uuid4().hex[:8]
    async with runtime_tables_engine(infra.postgres_url, "outbox") as (url, engine, metadata):
        topic = f"it-outbox-{suffix}"
        await create_topics(infra.credentials("broker"), [topic], partitions=3)
        yield Scratch(url, f"it{suffix}", topic, metadata, engine)


@pytest_asyncio.fixture(loop_scope="session")
async def producer(infra):
    started = new_producer(infra.kafka_bootstrap, 2, "it-relay", **infra.credentials("broker").security_options())
    await started.start()
    yield started
    await started.stop()


def registered(subject: str, n: int) -> AccountRegistered:
    return AccountRegistered(account_id=subject, role="client", name=str(n), email=f"{subject}@example.test")


async def commit_events(scratch: Scratch, events: list[tuple[str, int]]) -> list[Envelope]:
    """One transaction per event, in this order: this is the commit order."""
    published = []
    for subject, n in events:
        async with scratch.new_uow() as uow:
            published.append(uow.publish(scratch.topic, registered(subject, n), subject=subject))
            await uow.commit()
    return published


def start_relay(scratch: Scratch, producer, idle_check: float = 30.0,
                standby_poll: float = 0.2) -> tuple[OutboxRelay, asyncio.Task]:
    relay = OutboxRelay(scratch.url, producer, scratch.service, batch_size=7, idle_check=idle_check,
                        standby_poll=standby_poll)
    return relay, asyncio.create_task(relay.run())


async def stop(*tasks: asyncio.Task) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def wait_until(condition, timeout: float, what: str) -> float:
    """Poll with a deadline; returns how long it took."""
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} not within {timeout}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def unsent(scratch: Scratch) -> int:
    return len(await scratch.fetch("SELECT seq FROM outbox WHERE sent_at IS NULL"))


# -- the relay ------------------------------------------------------------------------------


async def test_the_relay_publishes_in_commit_order_per_subject_with_the_row_id_as_cloudevents_id(
        infra, scratch, producer):
    subjects = ["c-1", "c-2", "c-3", "c-4"]
    before = await commit_events(scratch, [(subjects[n % 4], n) for n in range(0, 24)])
    rows = await scratch.fetch("SELECT event_id FROM outbox ORDER BY seq")  # read before the relay deletes them
    assert [r["event_id"] for r in rows] == [e.id for e in before]
    _, task = start_relay(scratch, producer)
    after = await commit_events(scratch, [(subjects[n % 4], n) for n in range(24, 40)])
    try:
        records = await read_topic(infra.credentials("broker"), scratch.topic, 40)
    finally:
        await stop(task)
    assert len(records) == 40
    on_kafka = [(r.key.decode(), Envelope.model_validate_json(r.value)) for r in records]
    for subject in subjects:
        names = [int(e.data["name"]) for key, e in on_kafka if key == subject]
        assert names == sorted(names) and len(names) == 10, (subject, names)
    assert {e.id for _, e in on_kafka} == {e.id for e in before + after}
    assert all(dict(r.headers)["content-type"] == b"application/cloudevents+json" for r in records)
    # The type as a header too: consumers skip what they do not handle without parsing the value.
    assert all(dict(r.headers)["ce_type"] == Envelope.model_validate_json(r.value).type.encode() for r in records)


async def test_the_relay_deletes_what_it_published_so_the_outbox_does_not_grow(infra, scratch, producer):
    events = await commit_events(scratch, [("c-1", n) for n in range(10)])
    _, task = start_relay(scratch, producer)
    try:
        records = await read_topic(infra.credentials("broker"), scratch.topic, 10)
        await wait_until(lambda: _outbox_is_empty(scratch), 10, "every published row deleted")
    finally:
        await stop(task)
    assert [Envelope.model_validate_json(r.value).id for r in records] == [e.id for e in events]


async def _outbox_is_empty(scratch: Scratch) -> bool:
    return not await scratch.fetch("SELECT seq FROM outbox")


async def _none_unsent(scratch: Scratch) -> bool:
    return await unsent(scratch) == 0


async def test_a_commit_wakes_the_idle_relay_through_listen_notify_well_before_its_idle_check(
        infra, scratch, producer):
    _, task = start_relay(scratch, producer, idle_check=30.0)
    try:
        await commit_events(scratch, [("c-1", 0)])  # the relay is up and has been through its first pass
        await wait_until(lambda: _none_unsent(scratch), 10, "the first row relayed")
        await asyncio.sleep(0.5)  # now it waits for a NOTIFY (or 30 s)
        committed = time.time()
        [event] = await commit_events(scratch, [("c-1", 1)])
        records = await read_topic(infra.credentials("broker"), scratch.topic, 2, timeout=10)
    finally:
        await stop(task)
    assert [Envelope.model_validate_json(r.value).id for r in records][-1] == event.id
    delivered = records[-1].timestamp / 1000 - committed  # the producer stamps the record when it sends it
    assert delivered < 5, f"delivered after {delivered:.2f}s: woken by the idle check, not by NOTIFY"


async def test_a_standby_relay_tries_the_lock_and_takes_over_when_the_active_ones_connection_dies(
        infra, scratch, producer):
    _, first = start_relay(scratch, producer)
    await commit_events(scratch, [("c-1", 0)])
    await wait_until(lambda: _none_unsent(scratch), 10, "the first relay active")
    _, standby = start_relay(scratch, producer, standby_poll=0.2)
    try:
        await wait_until(lambda: _standby_asked_for_the_lock(scratch), 10, "the standby asking for the lock")
        active_pid = await _lock_holder(scratch)
        await commit_events(scratch, [("c-1", 1)])
        await wait_until(lambda: _none_unsent(scratch), 10, "relayed by the active relay")
        assert await _lock_waiters(scratch) == 0  # the standby tries the lock; it never waits inside PostgreSQL

        await scratch.fetch("SELECT pg_terminate_backend($1)", active_pid)  # its connection dies
        took = await wait_until(lambda: _holder_is_not(scratch, active_pid), 10, "the standby holding the lock")
        await commit_events(scratch, [("c-1", 2), ("c-1", 3)])
        await wait_until(lambda: _none_unsent(scratch), 10, "relayed after the takeover")
        records = await read_topic(infra.credentials("broker"), scratch.topic, 4, timeout=10)
    finally:
        await stop(first, standby)
    assert [int(Envelope.model_validate_json(r.value).data["name"]) for r in records] == [0, 1, 2, 3]
    assert took < 5, f"the takeover took {took:.1f} s with the standby trying every 0.2 s"


async def test_a_standby_relay_holds_back_no_dead_rows_while_it_waits_for_the_lock(infra, scratch, producer):
    """A session waiting inside pg_advisory_lock holds a snapshot, and so the database's xmin horizon: for as long
    as a standby waited, no dead row of any table there could be removed, and the outbox's deleted rows piled up
    under every relay pass. A standby that tries the lock now and then holds nothing between its tries."""
    _, first = start_relay(scratch, producer)
    await commit_events(scratch, [("c-1", 0)])
    await wait_until(lambda: _none_unsent(scratch), 10, "the first relay active")
    _, standby = start_relay(scratch, producer, standby_poll=0.2)
    conn = await asyncpg.connect(asyncpg_dsn(scratch.url))
    try:
        await wait_until(lambda: _standby_asked_for_the_lock(scratch), 10, "the standby asking for the lock")
        await commit_events(scratch, [("c-2", n) for n in range(50)])  # published, then deleted: dead rows
        await wait_until(lambda: _outbox_is_empty(scratch), 10, "every published row deleted")
        said: list[str] = []
        conn.add_log_listener(lambda _, message: said.append(str(message)))
        await conn.execute("VACUUM (VERBOSE) outbox")
    finally:
        await conn.close()
        await stop(first, standby)
    kept = [int(n) for line in said for n in re.findall(r"(\d+) are dead but not yet removable", line)]
    assert kept, f"no such count in VACUUM VERBOSE's report: {said}"
    assert kept == [0] * len(kept), f"the outbox's dead rows kept from vacuum while a standby relay waited: {said}"


async def _standby_asked_for_the_lock(scratch: Scratch) -> bool:
    """A relay session that does not hold the lock has asked for it (waiting inside, or having tried)."""
    holder = await _lock_holder(scratch)
    rows = await scratch.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                               "AND application_name = $1 AND query LIKE '%advisory_lock%' AND pid <> $2",
                               application_name(scratch.service), holder or 0)
    return bool(rows)


_ADVISORY = "SELECT pid, granted FROM pg_locks WHERE locktype = 'advisory' AND database = " \
            "(SELECT oid FROM pg_database WHERE datname = current_database())"


async def _lock_waiters(scratch: Scratch) -> int:
    return sum(1 for r in await scratch.fetch(_ADVISORY) if not r["granted"])


async def _lock_holder(scratch: Scratch) -> int | None:
    return next((r["pid"] for r in await scratch.fetch(_ADVISORY) if r["granted"]), None)


async def _holder_is_not(scratch: Scratch, pid: int) -> bool:
    holder = await _lock_holder(scratch)
    return holder is not None and holder != pid


async def test_a_pass_marks_the_rows_the_pass_before_it_published_in_the_same_statement(infra, scratch, producer):
    relay = OutboxRelay(scratch.url, producer, scratch.service, batch_size=7)
    conn = await asyncpg.connect(asyncpg_dsn(scratch.url))
    try:
        await commit_events(scratch, [("c-1", 0), ("c-2", 1)])
        assert await relay.publish_pending(conn) == 2
        assert await unsent(scratch) == 2  # published, marking deferred
        await commit_events(scratch, [("c-1", 2)])
        assert await relay.publish_pending(conn) == 1  # reads only the new row, marks the two before it
        assert await unsent(scratch) == 1
        await relay.delete_published(conn)  # nothing followed at once: marked on its own
        assert await unsent(scratch) == 0
        assert await relay.publish_pending(conn) == 0
    finally:
        await conn.close()
    records = await read_topic(infra.credentials("broker"), scratch.topic, 3, timeout=10)
    assert [int(Envelope.model_validate_json(r.value).data["name"]) for r in records
            if r.key == b"c-1"] == [0, 2]  # each published once, in order


async def test_the_running_relay_leaves_marking_to_the_next_pass_when_one_follows_within_its_mark_delay(
        infra, scratch, producer):
    relay = OutboxRelay(scratch.url, producer, scratch.service, batch_size=7, idle_check=30.0, delete_delay=30.0)
    task = asyncio.create_task(relay.run())
    try:
        await wait_until(lambda: _relay_active(relay), 10, "the relay holding its lock")
        await commit_events(scratch, [("c-1", 0)])
        await read_topic(infra.credentials("broker"), scratch.topic, 1, timeout=10)
        assert await unsent(scratch) == 1  # published; its mark waits for the next pass
        await commit_events(scratch, [("c-1", 1)])  # the next commit's pass marks it while reading the new row
        await read_topic(infra.credentials("broker"), scratch.topic, 2, timeout=10)
        await wait_until(lambda: _unsent_is(scratch, 1), 10, "the first row marked by the second pass")
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)
    assert await unsent(scratch) == 0  # a graceful stop marks what it published


async def test_a_pass_with_none_after_it_is_marked_on_its_own_after_the_mark_delay(infra, scratch, producer):
    relay = OutboxRelay(scratch.url, producer, scratch.service, batch_size=7, idle_check=30.0, delete_delay=0.2)
    task = asyncio.create_task(relay.run())
    try:
        await wait_until(lambda: _relay_active(relay), 10, "the relay holding its lock")
        await commit_events(scratch, [("c-1", 0)])
        await wait_until(lambda: _none_unsent(scratch), 10, "the lone row marked after the mark delay")
    finally:
        await stop(task)


async def _unsent_ids_are(scratch: Scratch, ids: list[str]) -> bool:
    return [r["event_id"] for r in await scratch.fetch(
        "SELECT event_id FROM outbox WHERE sent_at IS NULL ORDER BY seq")] == ids


async def _relay_active(relay: OutboxRelay) -> bool:
    return relay.active


async def _unsent_is(scratch: Scratch, n: int) -> bool:
    return await unsent(scratch) == n


async def test_rows_published_but_not_deleted_before_a_crash_are_published_again_with_the_same_id(
        infra, scratch, producer):
    [event] = await commit_events(scratch, [("c-1", 0)])
    # A relay that waits long before deleting what it published, killed (cancelled) once the row is on Kafka.
    relay = OutboxRelay(scratch.url, producer, scratch.service, batch_size=7, idle_check=30.0, delete_delay=30.0)
    task = asyncio.create_task(relay.run())
    await read_topic(infra.credentials("broker"), scratch.topic, 1, timeout=10)
    await stop(task)
    assert await unsent(scratch) == 1  # published, not deleted
    _, task = start_relay(scratch, producer)
    try:
        records = await read_topic(infra.credentials("broker"), scratch.topic, 2, timeout=10)
    finally:
        await stop(task)
    assert [Envelope.model_validate_json(r.value).id for r in records] == [event.id, event.id]


async def test_only_the_relays_own_deletes_commit_without_waiting_for_the_wal_flush(scratch):
    """A forgotten delete only republishes rows under the same ids (the test above); a forgotten state change would
    lose money. So the relay's session alone runs with synchronous_commit off, the units of work keep it on."""
    relay_conn = await relay_connection(asyncpg_dsn(scratch.url))
    try:
        assert await relay_conn.fetchval("SHOW synchronous_commit") == "off"
    finally:
        await relay_conn.close()
    async with scratch.engine.connect() as units_of_work:  # the engine every unit of work of a service uses
        assert (await units_of_work.exec_driver_sql("SHOW synchronous_commit")).scalar() == "on"
    # and nothing else turns it off: no code, script or manifest of the platform
    root = Path(__file__).resolve().parents[2]
    turned_off = sorted(str(path.relative_to(root)) for folder in ("runtime", "services", "deploy")
                        for path in (root / folder).rglob("*")
                        if path.suffix in (".py", ".sh", ".yaml", ".yml", ".conf", ".sql") and path.is_file()
                        and _SYNCHRONOUS_COMMIT_OFF.search(path.read_text(errors="ignore")))
    assert turned_off == ["runtime/platform_runtime/relay.py"]


_SYNCHRONOUS_COMMIT_OFF = re.compile(r"synchronous_commit[\s`'\"=:]*off", re.IGNORECASE)


# -- the inbox, real and fake: the same tests ----------------------------------------------


class RealInbox:
    def __init__(self, scratch: Scratch) -> None:
        self.scratch = scratch

    def new_uow(self) -> UnitOfWork:
        return self.scratch.new_uow()

    async def recorded(self) -> dict[str, str]:
        return {r["message_id"]: r["status"] for r in await self.scratch.fetch(
            "SELECT message_id, status FROM processed_messages")}

    async def outbox(self) -> list[str]:
        return [r["type"] for r in await self.scratch.fetch("SELECT type FROM outbox")]


class FakeInbox:
    def __init__(self) -> None:
        self.store = FakeStore()

    def new_uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.store)

    async def recorded(self) -> dict[str, str]:
        return {k: v["status"] for k, v in self.store.inbox.items()}

    async def outbox(self) -> list[str]:
        return [o.envelope.type for o in self.store.outbox]


@pytest.fixture(params=["postgres", "fake"])
def inbox(request):
    return RealInbox(request.getfixturevalue("scratch")) if request.param == "postgres" else FakeInbox()


def command(name: str = "Ann", id: str = "cmd-1") -> Envelope:
    return new_envelope(RegisterAccount(account_id="a-1", role="client", name=name, email="a@example.test"),
                        subject="a-1", actor="admin:tests", source="tests", id=id)


async def test_a_claim_is_kept_only_when_its_transaction_commits(inbox):
    async with inbox.new_uow() as uow:
        assert await uow.claim(command(id="rolled-back")) == "new"
    async with inbox.new_uow() as uow:
        assert await uow.claim(command(id="committed")) == "new"
        await uow.commit()
    assert await inbox.recorded() == {"committed": "accepted"}


async def test_a_message_seen_before_is_a_duplicate_with_the_same_body_and_a_conflict_with_another(inbox):
    async with inbox.new_uow() as uow:
        await uow.claim(command())
        await uow.commit()
    async with inbox.new_uow() as uow:
        assert await uow.claim(command()) == "duplicate"
        assert await uow.claim(command(name="Bob")) == "conflict"


async def test_a_handler_that_fails_leaves_neither_an_inbox_row_nor_an_outbox_row(inbox):
    async def fails_after_its_work(cmd, ctx):
        ctx.uow.publish("contracts.events", AccountRegistered(account_id="a-1", role="client", name="Ann",
                                                          email="a@example.test"), subject="a-1")
        raise RuntimeError("crash in the handler")

    dispatcher = CommandDispatcher("contracts.commands", {RegisterAccount: fails_after_its_work},
                                   "contracts.events")
    with pytest.raises(RuntimeError):
        async with inbox.new_uow() as uow:
            await dispatcher.dispatch(command(), uow)
            await uow.commit()
    assert await inbox.recorded() == {}
    assert await inbox.outbox() == []


async def test_a_handled_command_leaves_its_inbox_row_and_its_events_together(inbox):
    async def registers(cmd, ctx):
        ctx.uow.publish("contracts.events", AccountRegistered(account_id="a-1", role="client", name="Ann",
                                                          email="a@example.test"), subject="a-1")

    dispatcher = CommandDispatcher("contracts.commands", {RegisterAccount: registers}, "contracts.events")
    async with inbox.new_uow() as uow:
        await dispatcher.dispatch(command(), uow)
        await uow.commit()
    assert await inbox.recorded() == {"cmd-1": "accepted"}
    assert await inbox.outbox() == ["AccountRegistered"]


async def test_the_inbox_row_and_the_state_change_are_one_transaction_in_postgres(scratch):
    processed = scratch.metadata.tables["processed_messages"]
    async with scratch.new_uow() as uow:
        await uow.claim(command())
        # Seen from another connection before the commit: nothing.
        assert await scratch.fetch("SELECT 1 FROM processed_messages") == []
        await uow.commit()
    async with scratch.session_factory() as session:
        assert (await session.execute(select(processed.c.status))).scalar() == "accepted"


# -- one row the broker refuses (issue 9, item 5) ------------------------------------------------


async def test_a_message_too_large_to_publish_is_refused_when_it_is_written(scratch):
    from platform_runtime.errors import Rejected

    async with scratch.new_uow() as uow:
        small = uow.publish(scratch.topic, registered("c-1", 1), subject="c-1")
        uow.max_message_bytes = len(small.payload) + 100  # publish returns what it queued: the bytes written
        with pytest.raises(Rejected) as refused:
            uow.publish(scratch.topic, registered("c-1", "x" * 190), subject="c-1")
        assert refused.value.reason_code == "too_large"


async def test_a_row_the_broker_refuses_holds_back_only_its_own_subject_and_is_reported(infra, scratch, caplog):
    from platform_runtime.relay import new_producer

    # A producer whose request limit is smaller than one of the rows: it refuses that row, as a broker would
    # a message over message.max.bytes. (A row this big can no longer be written through publish().)
    small = new_producer(infra.kafka_bootstrap, 0, "it-relay-small", **infra.credentials("broker").security_options())
    small._max_request_size = 1_500  # noqa: SLF001 - aiokafka has no setter; 1 MiB otherwise
    await small.start()
    try:
        first = await commit_events(scratch, [("c-1", 1), ("c-2", 1)])
        async with scratch.new_uow() as uow:
            huge = uow.publish(scratch.topic, AccountRegistered(account_id="c-1", role="client", name="n" * 180,
                                                                email="c-1@example.test"), subject="c-1")
            await uow.commit()
        await scratch.fetch("UPDATE outbox SET payload = payload || convert_to(repeat(' ', 2000), 'UTF8') "
                            "WHERE event_id = $1", huge.id)
        later = await commit_events(scratch, [("c-1", 2), ("c-2", 2), ("c-3", 1)])
        relay, task = start_relay(scratch, small, idle_check=0.2)
        try:
            records = await read_topic(infra.credentials("broker"), scratch.topic, 4)
            published = {(r.key.decode(), Envelope.model_validate_json(r.value).id) for r in records}
            # Everything but the refused row and the one behind it on its subject went out.
            assert published == {("c-1", first[0].id), ("c-2", first[1].id), ("c-2", later[1].id),
                                  ("c-3", later[2].id)}
            [(seq, failing)] = relay.failing.items()
            assert failing.key == "c-1" and "MessageSizeTooLarge" in failing.error
            # The others are marked sent (by the next pass, or after the relay's mark delay); these two are not.
            await wait_until(lambda: _unsent_ids_are(scratch, [huge.id, later[0].id]), 10, "only the two held unsent")
            # An operator mends the row: it goes out, then the row held behind it, in commit order.
            await scratch.fetch("UPDATE outbox SET payload = convert_to(rtrim(convert_from(payload, 'UTF8')), 'UTF8') "
                                "WHERE seq = $1", seq)
            await wait_until(lambda: unsent_is(scratch, 0), 30, "the mended row and the held one published")
            records = await read_topic(infra.credentials("broker"), scratch.topic, 6)
            assert [Envelope.model_validate_json(r.value).id for r in records if r.key == b"c-1"] == [
                first[0].id, huge.id, later[0].id]
            assert relay.failing == {}
        finally:
            await stop(task)
    finally:
        await small.stop()


async def unsent_is(scratch: Scratch, n: int) -> bool:
    return await unsent(scratch) == n


async def test_a_batch_with_a_command_rejected_after_its_writes_keeps_the_others_and_undoes_only_that_one(inbox):
    """The consumer handles a batch without a savepoint per command first; a rejection rolls the whole try back
    and the batch is handled again with one savepoint each (platform_runtime/consumer.py `_handle`)."""
    async def registers_then_checks(cmd, ctx):
        ctx.uow.publish("contracts.events", AccountRegistered(account_id=cmd.account_id, role="client",
                                                          name=cmd.name, email=cmd.email), subject=cmd.account_id)
        if cmd.name == "Bad":
            raise Rejected("already_exists", "refused after its event was queued")

    dispatcher = CommandDispatcher("contracts.commands", {RegisterAccount: registers_then_checks},
                                   "contracts.events")
    consumer = BatchProcessor("contracts.commands", dispatcher.dispatch, inbox.new_uow, FakeDeadLetters(), 3, 0.01)
    names = ["Ann", "Bad", "Cy"]
    await consumer.process([record(command(name=n, id=f"cmd-{n}").to_json(), i) for i, n in enumerate(names)])
    assert await inbox.recorded() == {"cmd-Ann": "accepted", "cmd-Bad": "rejected", "cmd-Cy": "accepted"}
    assert sorted(await inbox.outbox()) == ["AccountRegistered", "AccountRegistered", "CommandRejected"]


# -- timers: queued by the unit of work, written at commit in the outbox's statement -------------------


async def _timers(scratch: Scratch) -> dict[str, str]:
    rows = await scratch.fetch("SELECT timer_id, cancelled_at IS NOT NULL AS cancelled FROM timers")
    return {r["timer_id"]: "cancelled" if r["cancelled"] else "pending" for r in rows}


async def test_timers_are_written_at_commit_and_cancel_only_what_was_there_before(scratch):
    soon = datetime.now(timezone.utc) + timedelta(minutes=5)
    async with scratch.new_uow() as uow:
        await uow.schedule("a", "deadline", "s-1", soon, {"n": 1})
        await uow.schedule("b", "reminder", "s-1", soon, {"n": 2})
        uow.publish(scratch.topic, registered("s-1", 0), subject="s-1")
        assert await _timers(scratch) == {}  # queued, not yet written
        await uow.commit()
    assert await _timers(scratch) == {"a": "pending", "b": "pending"}
    assert len(await scratch.fetch("SELECT seq FROM outbox")) == 1
    async with scratch.new_uow() as uow:  # the next step's deadline: the old one cancelled, the new one kept
        await uow.cancel_timers("s-1", "deadline")
        await uow.schedule("c", "deadline", "s-1", soon, {"n": 3})
        await uow.commit()
    assert await _timers(scratch) == {"a": "cancelled", "b": "pending", "c": "pending"}
    async with scratch.new_uow() as uow:  # scheduled then cancelled in one transaction: never written
        await uow.schedule("d", "deadline", "s-1", soon, {"n": 4})
        await uow.cancel_timers("s-1", "deadline")
        await uow.commit()
    assert await _timers(scratch) == {"a": "cancelled", "b": "pending", "c": "cancelled"}
    async with scratch.new_uow() as uow:  # rolled back: nothing
        await uow.schedule("e", "deadline", "s-2", soon, {"n": 5})
    assert "e" not in await _timers(scratch)
    [row] = await scratch.fetch("SELECT payload, due_at FROM timers WHERE timer_id = 'b'")
    assert json.loads(row["payload"]) == {"n": 2} and row["due_at"] == soon


async def test_a_timer_being_fired_is_left_alone_by_a_cancel(scratch):
    soon = datetime.now(timezone.utc) + timedelta(minutes=5)
    async with scratch.new_uow() as uow:
        await uow.schedule("f", "deadline", "s-3", soon, {})
        await uow.commit()
    runner = await asyncpg.connect(asyncpg_dsn(scratch.url))
    try:
        firing = runner.transaction()
        await firing.start()
        await runner.fetch("SELECT timer_id FROM timers WHERE timer_id = 'f' FOR UPDATE")  # a runner holds it
        async with scratch.new_uow() as uow:
            await uow.cancel_timers("s-3", "deadline")
            await asyncio.wait_for(uow.commit(), 10)  # skipped, not waited for
        await firing.rollback()
    finally:
        await runner.close()
    assert (await _timers(scratch))["f"] == "pending"


def _plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


async def test_a_cancellation_probes_its_timers_by_subject_whatever_the_statistics_say(scratch):
    """The statistics were taken when nearly every timer was cancelled; then a burst left thousands pending. The
    cancelling statement still looks each (subject, kind) up in timers_pending_by_subject, instead of reading
    every pending timer once per statement (what it did, written as a join, with these statistics)."""
    due = datetime.now(timezone.utc) + timedelta(minutes=5)
    conn = await asyncpg.connect(asyncpg_dsn(scratch.url))
    try:
        await conn.execute("INSERT INTO timers (timer_id, kind, subject, due_at, payload, cancelled_at)"
                           " SELECT 'old-' || n, 'deadline', 'old-' || n, $1, '{}', $1"
                           " FROM generate_series(1, 20000) AS n", due)
        await conn.execute("ANALYZE timers")
        await conn.execute("INSERT INTO timers (timer_id, kind, subject, due_at, payload)"
                           " SELECT 'new-' || n, 'deadline', 'saga-' || n, $1, '{}' FROM generate_series(1, 3000) AS n",
                           due)
        subjects = [f"saga-{n}" for n in range(1, 3001, 15)]
        cancel = driver_sql.write_at_commit(True, False, False, False)
        [plan] = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {cancel}", due, subjects,
                                                ["deadline"] * len(subjects)))
        scans = [(n["Node Type"], n.get("Index Name")) for n in _plan_nodes(plan["Plan"])
                 if n.get("Relation Name") == "timers" and n["Node Type"] != "ModifyTable"]
        assert ("Index Scan", "timers_pending_by_subject") in scans, scans
        assert {index for _, index in scans} <= {"timers_pending_by_subject", "timers_pkey"}, scans
        await conn.execute(cancel, due, subjects, ["deadline"] * len(subjects))
        cancelled = await conn.fetch("SELECT subject FROM timers WHERE subject LIKE 'saga-%' AND cancelled_at = $1",
                                     due)
        assert sorted(r["subject"] for r in cancelled) == sorted(subjects)
    finally:
        await conn.close()


async def test_a_batch_claimed_at_once_handles_each_new_message_once_and_skips_what_was_seen(inbox):
    """The consumer claims a batch's messages in one statement (UnitOfWork.claim_all): a message handled in an
    earlier batch, and a second delivery of one in the same batch, are duplicates; the others are handled."""
    handled = []

    async def registers(cmd, ctx):
        handled.append(cmd.name)
        ctx.uow.publish("contracts.events", AccountRegistered(account_id=cmd.account_id, role="client",
                                                          name=cmd.name, email=cmd.email), subject=cmd.account_id)

    dispatcher = CommandDispatcher("contracts.commands", {RegisterAccount: registers}, "contracts.events")
    consumer = BatchProcessor("contracts.commands", dispatcher.dispatch, inbox.new_uow, FakeDeadLetters(), 3, 0.01,
                              claim_status=dispatcher.claim_status)
    await consumer.process([record(command(name="Ann", id="cmd-Ann").to_json(), 0)])
    batch = [command(name=n, id=f"cmd-{n}") for n in ("Ann", "Bo", "Cy", "Bo")]
    await consumer.process([record(e.to_json(), i + 1) for i, e in enumerate(batch)])
    assert handled == ["Ann", "Bo", "Cy"]
    assert await inbox.recorded() == {"cmd-Ann": "accepted", "cmd-Bo": "accepted", "cmd-Cy": "accepted"}
    assert sorted(await inbox.outbox()) == ["AccountRegistered"] * 3


async def test_an_id_used_before_with_another_body_is_rejected_when_claimed_with_its_batch(inbox):
    dispatcher = CommandDispatcher("contracts.commands", {RegisterAccount: lambda cmd, ctx: _nothing()},
                                   "contracts.events")
    consumer = BatchProcessor("contracts.commands", dispatcher.dispatch, inbox.new_uow, FakeDeadLetters(), 3, 0.01,
                              claim_status=dispatcher.claim_status)
    await consumer.process([record(command(name="Ann", id="cmd-1").to_json(), 0)])
    await consumer.process([record(command(name="Eve", id="cmd-1").to_json(), 1),
                            record(command(name="Bo", id="cmd-2").to_json(), 2)])
    assert (await inbox.recorded())["cmd-2"] == "accepted"
    assert await inbox.outbox() == ["CommandRejected"]  # idempotency_conflict, and cmd-2 handled


async def _nothing() -> None:
    return None


async def test_a_lone_message_is_claimed_with_the_answers_its_handler_will_ask_for_in_one_statement(scratch):
    """A saga step alone in its batch (every step at a low rate): its claim and the look-up of its step answered
    as failed before go in one statement (UnitOfWork.claim_all with `kept`); `recorded` then answers from it, and
    an answer kept later in the transaction is seen by the next `recorded`."""
    async with scratch.new_uow() as uow:
        await uow.remember("failed-step:s-1", "EscrowHoldRejected", "c-1", {"reason_code": "currency_mismatch"})
        await uow.commit()
    statements: list[str] = []
    async with scratch.new_uow() as uow:
        conn = await uow.driver()
        def log(logged) -> None:  # asyncpg's own look-ups of types (jit, typeinfo) are not the inbox's
            if "processed_messages" in logged.query:
                statements.append(logged.query)

        conn.add_query_logger(log)
        try:
            step = command(name="Ann", id="cmd-step")
            await uow.claim_all([step], "accepted", ["failed-step:s-1", "failed-step:s-2"])
            await asyncio.sleep(0)  # asyncpg calls its query loggers soon after, not within the statement
            assert len(statements) == 1
            assert await uow.claim(step) == "new"
            assert await uow.recorded("failed-step:s-1") == {"reason_code": "currency_mismatch"}
            assert await uow.recorded_many(["failed-step:s-1", "failed-step:s-2"]) == {
                "failed-step:s-1": {"reason_code": "currency_mismatch"}}
            await asyncio.sleep(0)
            assert len(statements) == 1  # the claim, the verdict and both answers came with the one statement
            await uow.remember("failed-step:s-2", "EscrowHoldRejected", "c-1", {"reason_code": "overdraft"})
            assert await uow.recorded("failed-step:s-2") == {"reason_code": "overdraft"}
            await uow.commit()
        finally:
            conn.remove_query_logger(log)
    rows = await scratch.fetch("SELECT message_id, status FROM processed_messages ORDER BY message_id")
    assert [(r["message_id"], r["status"]) for r in rows] == [
        ("cmd-step", "accepted"), ("failed-step:s-1", "remembered"), ("failed-step:s-2", "remembered")]
