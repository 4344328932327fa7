"""The runtime's consumer on real Kafka and PostgreSQL: dead letters, and offsets committed after the DB.

A tiny service on the shared runtime (tests/support/probe_service.py) reads its own topic into its
own scratch database, through the same create_app as the four services.
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from platform_runtime.credentials import Credentials
from platform_runtime.fetch_sessions import SessionFetcher, use_fetch_sessions
from platform_runtime.relay import asyncpg_dsn
from platform_schemas import Envelope, new_envelope
from platform_schemas.commands.contracts import RegisterAccount
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support import probe_service
from tests.support.polling import eventually
from tests.support.probe_service import (
    ProbeSettings, committed_offsets, create_topics, drop_database, read_topic, scratch_database,
)
from tests.support.processes import DB_PREFIX, LOGS, ROOT

pytestmark = pytest.mark.integration
PROBE_PORT = int(os.environ.get("TEST_PORT_BASE", "18000")) + 90


@dataclass
class Probe:
    settings: ProbeSettings
    kafka: Credentials  # the super user: the probe's scratch topics are in no row of the ACL table
    producer: AIOKafkaProducer

    @property
    def topic(self) -> str:
        return self.settings.probe_topic

    async def send(self, account_id: str, name: str = "Ann") -> Envelope:
        command = new_envelope(RegisterAccount(account_id=account_id, role="client", name=name,
                                               email=f"{account_id}@example.test"),
                               subject="one-key", actor="admin:tests", source="tests")
        await self.send_raw(command.to_json())
        return command

    async def send_raw(self, value: bytes) -> None:
        # One key: every message on the same partition, in this order.
        await self.producer.send_and_wait(self.topic, value, key=b"one-key")

    async def registered(self) -> list[str]:
        conn = await asyncpg.connect(asyncpg_dsn(self.settings.database_url))
        try:
            return [r["account_id"] for r in await conn.fetch("SELECT account_id FROM registrations ORDER BY 1")]
        finally:
            await conn.close()

    async def committed(self) -> int:
        return (await committed_offsets(self.kafka, self.settings.probe_name)).get(0, 0)

    @contextlib.asynccontextmanager
    async def running(self, **overrides):
        """The probe service in this process, consuming until the block ends (graceful stop); yields its runtime."""
        app = probe_service.app(self.settings.model_copy(update=overrides))
        async with app.router.lifespan_context(app):
            yield app.state.runtime

    def process(self, marker: Path) -> subprocess.Popen:
        """The probe service as its own OS process, to be SIGKILLed."""
        env = {**os.environ, **self.kafka.service_env(), "DATABASE_URL": self.settings.database_url,
               "HTTP_PORT": str(PROBE_PORT), "PROBE_NAME": self.settings.probe_name, "PROBE_TOPIC": self.topic,
               "PROBE_EVENTS": self.settings.probe_events, "PROBE_HANG": "1", "PROBE_MARKER": str(marker)}
        LOGS.mkdir(parents=True, exist_ok=True)
        log = open(LOGS / f"{self.settings.probe_name}.log", "ab")
        return subprocess.Popen([sys.executable, "-m", "tests.support.probe_service"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


@pytest_asyncio.fixture(loop_scope="session")
async def probe(infra):
    suffix = uuid.uuid4().hex[:8]
    kafka = infra.credentials("broker")
    database = f"{DB_PREFIX}it_probe_{suffix}"
    settings = ProbeSettings(
        database_url=await scratch_database(infra.postgres_url, database),
        **{name.lower(): value for name, value in kafka.service_env().items()}, probe_name=f"probe-{suffix}",
        probe_topic=f"probe-{suffix}.commands", probe_events=f"probe-{suffix}.events",
        consumer_max_attempts=3, consumer_retry_backoff=0.05, probe_hang=False)
    engine = create_async_engine(settings.database_url)
    async with engine.begin() as conn:
        await conn.run_sync(probe_service.definition(settings).metadata.create_all)
    await engine.dispose()
    topic = settings.probe_topic
    await create_topics(kafka, [topic, f"{topic}.dlq", settings.probe_events])
    producer = AIOKafkaProducer(**kafka.kafka_options(), enable_idempotence=True)
    await producer.start()
    yield Probe(settings, kafka, producer)
    await producer.stop()
    await drop_database(infra.postgres_url, database)


def headers(record) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


# -- dead letters ---------------------------------------------------------------------------


async def test_a_malformed_message_goes_to_the_dlq_with_its_headers_and_the_good_command_after_it_goes_through(
        probe):
    await probe.send_raw(b'{"specversion": "1.0", "id": "broken"')
    good = await probe.send("a-1")
    async with probe.running():
        await eventually(lambda: _is(probe.committed(), 2), 60, "both offsets committed")
    assert await probe.registered() == ["a-1"]
    [dead] = await read_topic(probe.kafka, f"{probe.topic}.dlq", 1, timeout=10)
    assert dead.value == b'{"specversion": "1.0", "id": "broken"' and dead.key == b"one-key"
    assert headers(dead)["dlq.error"].startswith("unparseable envelope")
    assert (headers(dead)["dlq.original.topic"], headers(dead)["dlq.original.partition"],
            headers(dead)["dlq.original.offset"], headers(dead)["dlq.attempts"]) == (probe.topic, "0", "0", "1")
    [announced] = await read_topic(probe.kafka, probe.settings.probe_events, 1, timeout=10)
    assert Envelope.model_validate_json(announced.value).causationid == good.id


async def test_a_command_whose_handler_keeps_failing_is_dead_lettered_after_n_attempts_and_the_partition_goes_on(
        probe):
    await probe.send("p-1", name="poison")
    await probe.send("a-2")
    async with probe.running():
        await eventually(lambda: _is(probe.committed(), 2), 60, "both offsets committed")
    assert await probe.registered() == ["a-2"]  # the poison's attempts were all rolled back
    [dead] = await read_topic(probe.kafka, f"{probe.topic}.dlq", 1, timeout=10)
    assert Envelope.model_validate_json(dead.value).data["account_id"] == "p-1"
    assert "p-1 is poison" in headers(dead)["dlq.error"]
    assert (headers(dead)["dlq.attempts"], headers(dead)["dlq.original.offset"]) == ("3", "0")


async def _is(awaitable, expected) -> bool:
    return await awaitable == expected


# -- offsets after the database -------------------------------------------------------------


async def test_a_consumer_killed_mid_batch_has_committed_no_offset_beyond_what_the_database_holds(probe, tmp_path):
    marker = tmp_path / "hanging"
    for i in range(5):
        await probe.send(f"a-{i}")
    consumer = probe.process(marker)
    try:
        await eventually(lambda: _is(probe.committed(), 5), 60, "the first five committed")
        assert await probe.registered() == [f"a-{i}" for i in range(5)]

        await probe.send("h-5", name="hang")  # its handler blocks inside the batch's transaction
        for i in range(6, 10):
            await probe.send(f"a-{i}")
        await eventually(lambda: _exists(marker), 30, "the handler of h-5 blocking")
        await asyncio.sleep(1.0)  # time for anything wrong (an early commit) to happen
        assert await probe.committed() == 5
        assert await probe.registered() == [f"a-{i}" for i in range(5)]
    finally:
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(timeout=30)

    assert await probe.committed() == 5  # what was not in the database was not committed
    async with probe.running(probe_hang=False):  # a new member of the same group picks up from offset 5
        await eventually(lambda: _is(probe.committed(), 10), 60, "every offset committed after the restart")
    assert await probe.registered() == sorted(["h-5", *(f"a-{i}" for i in range(10) if i != 5)])
    announced = await read_topic(probe.kafka, probe.settings.probe_events, 21, timeout=3)
    assert len({Envelope.model_validate_json(r.value).id for r in announced}) == 10  # nothing was done twice
    assert await read_topic(probe.kafka, f"{probe.topic}.dlq", 1, timeout=1) == []


async def _exists(path: Path) -> bool:
    return path.exists()


async def test_messages_redelivered_after_their_database_commit_are_recognised_and_have_no_new_effect(probe):
    """A crash after the DB commit but before the offset commit redelivers the batch: the inbox absorbs it."""
    for i in range(4):
        await probe.send(f"a-{i}")
    async with probe.running():
        await eventually(lambda: _is(probe.committed(), 4), 60, "all four committed")
    await _rewind_group(probe, to=0)
    async with probe.running():
        await eventually(lambda: _is(probe.committed(), 4), 60, "all four read again and committed")
    assert await probe.registered() == [f"a-{i}" for i in range(4)]
    # The relay may publish a row twice (stopped between send and mark), always with the same id.
    announced = await read_topic(probe.kafka, probe.settings.probe_events, 9, timeout=5)
    assert len({Envelope.model_validate_json(r.value).id for r in announced}) == 4
    assert await read_topic(probe.kafka, f"{probe.topic}.dlq", 1, timeout=1) == []


async def _rewind_group(probe: Probe, to: int) -> None:
    """Commit an earlier offset for the group, as if its last offset commit had never happened."""
    consumer = AIOKafkaConsumer(**probe.kafka.kafka_options(), group_id=probe.settings.probe_name,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(probe.topic, 0)])
        await consumer.commit({TopicPartition(probe.topic, 0): to})
    finally:
        await consumer.stop()
    assert await probe.committed() == to


# -- a consumer that stops fetching ---------------------------------------------------------------

async def test_a_consumer_that_stops_fetching_is_restarted_by_the_watchdog_and_resumes_where_it_committed(probe):
    """The consumer is made to stop fetching (its partitions paused, as a consumer stuck after a broker restart
    would be): the broker reports the group's lag, no batch comes, and after CONSUMER_STALL_AFTER the watchdog
    restarts the consumer, which handles what waited, from the committed offset, exactly once."""
    await probe.send("before-stall")
    stall = {"consumer_stall_after": timedelta(seconds=3), "metrics_interval": timedelta(seconds=1)}
    async with probe.running(**stall) as runtime:
        await eventually(lambda: has(probe, "before-stall"), 60, "the first command handled")
        stuck = runtime.subscriber.consumer
        stuck.pause(*stuck.assignment())
        await probe.send("during-stall")
        await eventually(lambda: has(probe, "during-stall"), 120, "the command sent during the stall handled")
        assert runtime.subscriber.consumer is not stuck  # a new consumer did it
        await eventually(lambda: _committed_two(probe), 30, "the offset committed")
        assert not runtime.consumer_stalled()
    assert await probe.registered() == ["before-stall", "during-stall"]


async def has(probe: Probe, account_id: str) -> bool:
    return account_id in await probe.registered()


async def _committed_two(probe: Probe) -> bool:
    return await probe.committed() == 2


# -- fetch sessions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sessions", [True, False])
async def test_the_service_consumer_fetches_within_a_kafka_fetch_session_unless_told_not_to(probe, sessions):
    """The runtime's consumer (faststream's, on aiokafka) fetches within a session (fetch_sessions.py; the protocol
    itself is tested in test_fetch_sessions.py); KAFKA_FETCH_SESSIONS=false gives aiokafka's full fetches."""
    try:
        async with probe.running(kafka_fetch_sessions=sessions) as runtime:
            for i in range(3):
                await probe.send(f"s-{i}")
                await eventually(lambda: has(probe, f"s-{i}"), 60, f"command {i} handled")
            fetcher = runtime.subscriber.consumer._fetcher
            assert isinstance(fetcher, SessionFetcher) is sessions
            if sessions:
                [session] = fetcher.sessions.values()
                assert session.id != 0 and session.epoch >= 3  # a session, and fetches within it
    finally:
        use_fetch_sessions(True)  # the process's consumers as the runtime starts them
