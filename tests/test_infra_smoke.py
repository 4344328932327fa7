"""The test servers are real: Kafka round trip with an idempotent producer, every database answers,
and every platform topic exists with its partitions and retention."""

import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from platform_schemas.topics import TOPICS
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.integration

DATABASES = ("contracts", "escrow", "billing", "notifications", "gateway")


async def test_kafka_idempotent_round_trip(infra):
    topic = f"smoke-{uuid.uuid4().hex}"
    admin = AIOKafkaAdminClient(**infra.credentials("broker").kafka_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        producer = AIOKafkaProducer(**infra.credentials("broker").kafka_options(), enable_idempotence=True)
        await producer.start()
        try:
            sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(5)]
            for key, value in sent:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic, **infra.credentials("broker").kafka_options(), auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        got = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < len(sent) and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend((r.key, r.value) for r in records)
        finally:
            await consumer.stop()
        assert got == sent
    finally:
        await admin.delete_topics([topic])
        await admin.close()


@pytest.mark.parametrize("dbname", DATABASES)
async def test_postgres_database_answers(infra, dbname):
    engine = create_async_engine(infra.database_url(dbname))
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("select 1"))).scalar_one() == 1
            assert (await conn.execute(text("select current_database()"))).scalar_one() == dbname
    finally:
        await engine.dispose()


async def test_platform_topics_exist(infra):
    admin = AIOKafkaAdminClient(**infra.credentials("broker").kafka_options())
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics([t.name for t in TOPICS])}
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t.name, configs={"retention.ms": None}) for t in TOPICS]
        )
    finally:
        await admin.close()
    retention = {
        name: int(value)
        for response in responses
        for _err, _msg, _type, name, configs in response.resources
        for key, value, *_ in configs
        if key == "retention.ms"
    }
    for topic in TOPICS:
        assert described[topic.name]["error_code"] == 0, topic.name
        assert len(described[topic.name]["partitions"]) == topic.partitions == 12, topic.name
        assert retention[topic.name] == topic.retention_ms, topic.name
