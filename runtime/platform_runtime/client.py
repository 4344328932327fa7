"""A small client for the platform, as another back end would use it: publish commands, follow events.

Used by the demo, the tests and the benchmark; also the README's example of talking to the platform.
"""

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from platform_schemas import Envelope, Message, from_kafka, new_envelope
from platform_schemas.actors import ADMIN_TOPICS, command_topic
from platform_schemas.topics import BILLING_EVENTS, CONTRACTS_EVENTS, ESCROW_EVENTS, NOTIFICATIONS_EVENTS

from .credentials import Credentials

EVENT_TOPICS = [CONTRACTS_EVENTS, ESCROW_EVENTS, BILLING_EVENTS, NOTIFICATIONS_EVENTS]
PORTS = {"contracts": 8001, "escrow": 8002, "billing": 8003, "notifications": 8004}


@dataclass
class PlatformClient:
    bootstrap: str = "127.0.0.1:9092"
    source: str = "marketplace-web"
    http_host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: dict(PORTS))
    events: list[Envelope] = field(default_factory=list)
    on_event: Callable[[Envelope], None] | None = None
    # Whose credentials (deploy/local/credentials.sh NAME): the local integrator's unless given. Its Kafka
    # principal publishes the commands and reads the events; the read API's bearer token comes from them too
    # (README, "Security").
    credentials: Credentials | None = None
    # The `admin` principal's credentials: operators' commands go to the admin topics, which only it may write,
    # through a producer of their own. None: they go through the same connection as the rest.
    admin_kafka: Credentials | None = None

    async def start(self) -> None:
        if self.credentials is None:
            self.credentials = await asyncio.to_thread(Credentials.local, "integrator")
        self.producer = AIOKafkaProducer(**self._options(self.credentials), enable_idempotence=True, linger_ms=2)
        await self.producer.start()
        self.admin_producer = self.producer
        if self.admin_kafka is not None:
            self.admin_producer = AIOKafkaProducer(**self._options(self.admin_kafka), enable_idempotence=True,
                                                   linger_ms=2)
            await self.admin_producer.start()
        # No group: read every partition from its end as of now, so we see what our commands cause.
        self.consumer = AIOKafkaConsumer(**self._options(self.credentials), enable_auto_commit=False)
        await self.consumer.start()
        partitions = [tp for t in EVENT_TOPICS for tp in self._partitions(t)]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the positions now, before any command is sent
            await self.consumer.position(tp)
        self._reader = asyncio.create_task(self._read())
        self.http = httpx.AsyncClient(timeout=10)

    def _options(self, credentials: Credentials) -> dict[str, Any]:
        return credentials.kafka_options() | {"bootstrap_servers": self.bootstrap}  # the same broker for all

    def _partitions(self, topic: str):
        from aiokafka import TopicPartition

        parts = self.consumer.partitions_for_topic(topic)
        return [TopicPartition(topic, p) for p in sorted(parts or range(12))]

    async def stop(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.consumer.stop()
        if self.admin_producer is not self.producer:
            await self.admin_producer.stop()
        await self.producer.stop()
        await self.http.aclose()

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    envelope = from_kafka(record.value, record.headers)
                    self.events.append(envelope)
                    if self.on_event:
                        self.on_event(envelope)

    # -- commands ------------------------------------------------------------------------------
    async def send(self, data: Message, *, subject: str, actor: str, id: str | None = None,
                   topic: str | None = None, traceparent: str | None = None) -> Envelope:
        envelope = new_envelope(data, subject=subject, actor=actor, source=self.source, id=id,
                                traceparent=traceparent)
        await self.send_raw(topic or self.topic_of(data), envelope.to_json(), key=subject)
        return envelope

    async def send_raw(self, topic: str, value: bytes, key: str) -> None:
        await self.producer_for(topic).send_and_wait(topic, value, key=key.encode())

    def producer_for(self, topic: str) -> AIOKafkaProducer:
        """The admin principal's producer for the admin topics, the client's own for every other topic."""
        return self.admin_producer if topic in ADMIN_TOPICS else self.producer

    @staticmethod
    def topic_of(data: Message) -> str:
        """The command's one topic: an operator's on its service's admin topic, any other on the integrator's."""
        return command_topic(type(data).__name__)

    # -- events --------------------------------------------------------------------------------
    async def wait_for(self, predicate: Callable[[Envelope], bool], timeout: float = 30.0,
                       what: str = "event") -> Envelope:
        """The first event (seen so far or arriving) that matches; polls with a deadline."""
        deadline = time.monotonic() + timeout
        while True:
            for envelope in self.events:
                if predicate(envelope):
                    return envelope
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout}s")
            await asyncio.sleep(0.02)

    async def outcome(self, command: Envelope, types: set[str], timeout: float = 30.0) -> Envelope:
        """The event that ends a command: one of `types`, or its CommandRejected."""
        return await self.wait_for(
            lambda e: e.correlationid == command.id and (e.type in types or (
                e.type == "CommandRejected" and e.data.get("command_id") == command.id)),
            timeout, f"outcome of {command.type} {command.id}")

    def of_type(self, type_name: str, **match: object) -> list[Envelope]:
        return [e for e in self.events if e.type == type_name and all(e.data.get(k) == v for k, v in match.items())]

    # -- read side -----------------------------------------------------------------------------
    async def get(self, service: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """GET on a service's read API with this client's bearer token (and any other `headers`, e.g. Accept)."""
        return await self.http.get(f"http://{self.http_host}:{self.ports[service]}{path}",
                                   headers={**(headers or {}), **self.credentials.http_headers()})

    async def get_json(self, service: str, path: str) -> dict:
        response = await self.get(service, path)
        response.raise_for_status()
        return response.json()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def dumps(value: object) -> str:
    return json.dumps(value, indent=2, default=str)
