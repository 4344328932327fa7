"""The on-call gauges against real PostgreSQL and Kafka: consumer lag from the group's committed offsets,
the outbox's real backlog and age, due timers per kind and the oldest overdue."""

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from platform_runtime import metrics
from platform_runtime.backlog_metrics import ConsumerLag, read_outbox, read_timers
from platform_runtime.clock import FrozenClock
from sqlalchemy import insert

from tests.support.probe_service import create_topics, runtime_tables_engine

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def gauge(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} not exported"
    return value


@pytest_asyncio.fixture(loop_scope="session")
async def scratch(infra):
    async with runtime_tables_engine(infra.postgres_url, "backlog") as (_url, engine, metadata):
        yield engine, metadata.tables


async def test_outbox_gauges_count_every_unsent_row_and_the_age_of_the_oldest(scratch):
    engine, tables = scratch
    clock = FrozenClock(NOW)
    await read_outbox(engine, clock)
    assert gauge("outbox_unsent") == 0 and gauge("outbox_oldest_unsent_age_seconds") == 0
    rows = [{"event_id": f"e-{n}", "topic": "t", "key": "k", "type": "T", "payload": b"{}",
             "created_at": NOW - timedelta(seconds=n), "sent_at": NOW if n % 4 == 0 else None}
            for n in range(1, 701)]  # more than one relay batch: the old gauge could only say 0 or 500
    async with engine.begin() as conn:
        await conn.execute(insert(tables["outbox"]), rows)
    await read_outbox(engine, clock)
    assert gauge("outbox_unsent") == 525
    assert gauge("outbox_oldest_unsent_age_seconds") == 699  # row 700 was sent, 699 is the oldest unsent


async def test_timer_gauges_count_due_unfired_timers_per_kind_and_the_oldest_overdue(scratch):
    engine, tables = scratch

    def timer(n: int, kind: str, due: timedelta, **state) -> dict:
        return {"timer_id": f"t-{n}", "kind": kind, "subject": "s", "due_at": NOW + due, "payload": {},
                "fired_at": None, "cancelled_at": None, **state}

    async with engine.begin() as conn:
        await conn.execute(insert(tables["timers"]), [
            timer(1, "auto_release", -timedelta(minutes=5)),
            timer(2, "auto_release", -timedelta(seconds=30)),
            timer(3, "auto_release", timedelta(minutes=1)),  # not due yet
            timer(4, "auto_release", -timedelta(hours=1), fired_at=NOW),  # fired
            timer(5, "auto_release", -timedelta(hours=2), cancelled_at=NOW),  # cancelled
            timer(6, "review_reminder", -timedelta(seconds=7)),
        ])
    await read_timers(engine, FrozenClock(NOW), ["auto_release", "review_reminder", "inactivity_sweep"])
    assert gauge("timers_due", kind="auto_release") == 2
    assert gauge("timers_oldest_overdue_seconds", kind="auto_release") == 300
    assert gauge("timers_due", kind="review_reminder") == 1
    assert gauge("timers_oldest_overdue_seconds", kind="review_reminder") == 7
    assert gauge("timers_due", kind="inactivity_sweep") == 0  # a kind with nothing due reads 0
    await read_timers(engine, FrozenClock(NOW - timedelta(hours=1)), ["auto_release", "review_reminder"])
    assert gauge("timers_due", kind="auto_release") == 0  # and goes back to 0 once nothing is due


async def test_consumer_lag_is_the_log_end_minus_the_groups_committed_offset_per_partition(infra):
    topic, group = f"it-lag-{uuid.uuid4().hex[:8]}", f"it-lag-group-{uuid.uuid4().hex[:8]}"
    await create_topics(infra.credentials("broker"), [topic], partitions=3)
    producer = AIOKafkaProducer(**infra.credentials("broker").kafka_options())
    await producer.start()
    try:
        for partition, count in ((0, 5), (1, 2)):  # partition 2 stays empty
            for n in range(count):
                await producer.send_and_wait(topic, b"x", partition=partition)
    finally:
        await producer.stop()
    member = AIOKafkaConsumer(**infra.credentials("broker").kafka_options(), group_id=group, enable_auto_commit=False)
    await member.start()
    try:  # the group has done 3 records of partition 0 and nothing of partition 1
        member.assign([TopicPartition(topic, 0)])
        await member.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "")})
    finally:
        await member.stop()

    lag = ConsumerLag(infra.kafka_bootstrap, group, [topic], infra.credentials("broker").security_options())
    await lag.start()
    try:
        await lag.publish()
    finally:
        await lag.stop()
    assert gauge("kafka_consumer_lag", topic=topic, partition="0") == 2
    assert gauge("kafka_consumer_lag", topic=topic, partition="1") == 2  # never committed: from the start
    assert gauge("kafka_consumer_lag", topic=topic, partition="2") == 0
