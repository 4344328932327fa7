"""escrowctl's Kafka side: send a command, follow topics, read and replay dead letters (aiokafka)."""

import time
from datetime import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from platform_schemas import Envelope, from_kafka
from platform_schemas.topics import TOPICS, dlq
from pydantic import ValidationError

from .settings import CtlSettings

DLQ_TOPICS = [t.name for t in TOPICS if t.name.endswith(".dlq")]
REPLAYED_FROM = "dlq.replayed.from"  # header of a replayed record: where in the dead-letter topic it came from


def _options(settings: CtlSettings) -> dict:
    if settings.local_kafka_principal:  # that principal's credentials from deploy/local/credentials.sh
        from platform_runtime.credentials import Credentials

        return Credentials.local(settings.local_kafka_principal).kafka_options()
    from platform_runtime.kafka_security import client_options  # imports faststream: only when connecting

    return {"bootstrap_servers": settings.kafka_bootstrap_servers, **client_options(settings)}


async def publish(settings: CtlSettings, topic: str, value: bytes, key: bytes | None,
                  headers: list[tuple[str, bytes]] | None = None) -> None:
    producer = AIOKafkaProducer(enable_idempotence=True, **_options(settings))
    try:
        await producer.start()
        await producer.send_and_wait(topic, value, key=key, headers=headers or [])
    finally:
        await producer.stop()


def envelope_of(record: ConsumerRecord) -> Envelope | None:
    try:
        return from_kafka(record.value, record.headers)
    except ValidationError:
        return None


async def follow(settings: CtlSettings, topics: list[str], from_beginning: bool,
                 until_end: bool = False, since: datetime | None = None) -> AsyncIterator[ConsumerRecord]:
    """Records of these topics (every partition, no consumer group, nothing committed): from the end as of
    now, from the beginning, or from the first record at or after `since` (by the records' Kafka
    timestamps); with `until_end`, stop at the end offsets seen when starting."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **_options(settings))
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - no public refresh
            partitions = [TopicPartition(t, p) for t in topics
                          for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        if since is not None:
            found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
            await consumer.seek_to_end(*[tp for tp, at in found.items() if at is None])
            for tp, at in found.items():
                if at is not None:
                    consumer.seek(tp, at.offset)
        elif from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        ends = await consumer.end_offsets(partitions) if until_end else {}
        while True:
            if until_end and all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
                return
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    yield record
    finally:
        await consumer.stop()


@dataclass
class DeadLetter:
    record: ConsumerRecord

    @property
    def headers(self) -> dict[str, str]:
        return {k: v.decode("utf-8", "replace") for k, v in self.record.headers}

    @property
    def position(self) -> str:
        return f"{self.record.topic}:{self.record.partition}:{self.record.offset}"

    @property
    def original_topic(self) -> str:
        return self.headers.get("dlq.original.topic") or self.record.topic.removesuffix(".dlq")

    def summary(self) -> dict:
        envelope = envelope_of(self.record)
        h = self.headers
        return {"position": self.position, "original": f"{self.original_topic}:{h.get('dlq.original.partition')}:"
                f"{h.get('dlq.original.offset')}", "key": (self.record.key or b"").decode("utf-8", "replace"),
                "id": envelope.id if envelope else None, "type": envelope.type if envelope else None,
                "attempts": h.get("dlq.attempts"), "group": h.get("dlq.consumer.group"),
                "error": h.get("dlq.error"), "replayed": REPLAYED_FROM in h,
                "dead_lettered_at": self.record.timestamp}


async def dead_letters(settings: CtlSettings, topics: list[str]) -> list[DeadLetter]:
    letters = []
    async for record in follow(settings, topics, from_beginning=True, until_end=True):
        letters.append(DeadLetter(record))
    return letters


def parse_position(position: str) -> tuple[str, int, int]:
    """`<topic>.dlq:<partition>:<offset>` (as `dlq list` prints it)."""
    try:
        topic, partition, offset = position.rsplit(":", 2)
        return (topic if topic.endswith(".dlq") else dlq(topic)), int(partition), int(offset)
    except ValueError:
        raise ValueError(f"{position!r} is not <topic>.dlq:<partition>:<offset>") from None


async def dead_letter_at(settings: CtlSettings, position: str) -> DeadLetter:
    topic, partition, offset = parse_position(position)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **_options(settings))
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                for record in records:
                    if record.offset == offset:
                        return DeadLetter(record)
                    if record.offset > offset:
                        break
            if (await consumer.end_offsets([tp]))[tp] <= offset:
                break
        raise LookupError(f"no dead letter at {position}")
    finally:
        await consumer.stop()


async def replay(settings: CtlSettings, letter: DeadLetter) -> str:
    """Publish the dead letter's bytes to its original topic with its key, unchanged: its CloudEvents id is
    the same, so a consumer that already handled it drops it in its inbox. Returns the topic."""
    topic = letter.original_topic
    # The original headers (binary-mode `ce_*` attributes, content-type) go back too; the dead-letter ones not.
    original = [(k, v) for k, v in letter.record.headers if not k.startswith("dlq.")]
    await publish(settings, topic, letter.record.value, letter.record.key,
                  [*original, (REPLAYED_FROM, letter.position.encode())])
    return topic

