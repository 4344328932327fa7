"""The dead-letter topic of each consumed topic: the original bytes and headers, plus headers naming the error."""

from dataclasses import dataclass

from aiokafka import AIOKafkaProducer, ConsumerRecord
from platform_schemas.topics import dlq

from .logging import get_logger

log = get_logger(__name__)


@dataclass
class DeadLetters:
    producer: AIOKafkaProducer
    consumer_group: str

    async def send(self, record: ConsumerRecord, error: str, attempts: int) -> None:
        headers = [
            *[(k, v) for k, v in record.headers or () if not k.startswith("dlq.")],  # binary mode's ce_* too
            ("dlq.error", error[:2000].encode()),
            ("dlq.original.topic", record.topic.encode()),
            ("dlq.original.partition", str(record.partition).encode()),
            ("dlq.original.offset", str(record.offset).encode()),
            ("dlq.attempts", str(attempts).encode()),
            ("dlq.consumer.group", self.consumer_group.encode()),
        ]
        await self.producer.send_and_wait(dlq(record.topic), record.value, key=record.key, headers=headers)
        log.error("dead_lettered", topic=record.topic, partition=record.partition, offset=record.offset,
                  error=error, attempts=attempts)
