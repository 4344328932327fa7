"""Gauges an on-call engineer alerts on, computed every `metrics_interval` from the source of truth:

* `kafka_consumer_lag{topic,partition}`: the log end offset minus the service group's committed offset
  (what the group still has to do, whichever instance holds the partition);
* `outbox_unsent` and `outbox_oldest_unsent_age_seconds`: the relay's real backlog;
* `timers_due{kind}` and `timers_oldest_overdue_seconds{kind}`: due timers not yet fired.

One query each, on the partial indexes that already serve the relay and the timers (`outbox_unsent`,
`timers_pending`), and two Kafka metadata requests: cheap enough to run every few seconds in every instance.
"""

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from . import metrics
from .clock import Clock
from .logging import get_logger

log = get_logger(__name__)

_OUTBOX = text("SELECT count(*) AS unsent, min(created_at) AS oldest FROM outbox WHERE sent_at IS NULL")
_TIMERS = text(
    "SELECT kind, count(*) AS due, min(due_at) AS oldest FROM timers "
    "WHERE fired_at IS NULL AND cancelled_at IS NULL AND due_at <= :now GROUP BY kind"
)


async def read_outbox(engine: AsyncEngine, clock: Clock) -> None:
    async with engine.connect() as conn:
        row = (await conn.execute(_OUTBOX)).one()
    metrics.OUTBOX_LAG.set(row.unsent)
    age = (clock.now() - row.oldest).total_seconds() if row.oldest is not None else 0.0
    metrics.OUTBOX_OLDEST_AGE.set(max(age, 0.0))


async def read_timers(engine: AsyncEngine, clock: Clock, kinds: Iterable[str]) -> None:
    now = clock.now()
    async with engine.connect() as conn:
        rows = (await conn.execute(_TIMERS, {"now": now})).all()
    due = {kind: (0, 0.0) for kind in kinds}  # a kind with nothing due reads 0, not its last value
    due.update({r.kind: (r.due, max((now - r.oldest).total_seconds(), 0.0)) for r in rows})
    for kind, (count, overdue) in due.items():
        metrics.TIMERS_DUE.labels(kind).set(count)
        metrics.TIMERS_OLDEST_OVERDUE.labels(kind).set(overdue)


@dataclass
class ConsumerLag:
    """The group's lag per partition of the topics it consumes, from committed offsets and log ends."""

    bootstrap: str
    group: str
    topics: list[str]
    security: dict = field(default_factory=dict)  # kafka_security.client_options of the service
    last: dict[TopicPartition, int] = field(default_factory=dict)  # the last measure
    ends: dict[TopicPartition, int] = field(default_factory=dict)  # the log ends it read (the consumer watchdog's)
    measured_at: float | None = None  # time.monotonic() of the last measure that succeeded
    _admin: AIOKafkaAdminClient | None = None
    _offsets: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"{self.group}-lag",
                                          **self.security)
        await self._admin.start()
        # No group: this consumer only asks for offsets, it never joins or commits.
        self._offsets = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                         client_id=f"{self.group}-lag", **self.security)
        await self._offsets.start()

    async def stop(self) -> None:
        if self._offsets is not None:
            await self._offsets.stop()
        if self._admin is not None:
            await self._admin.close()

    async def reconnect(self, within: float = 30.0) -> None:
        """New clients (a broker restart can leave the old ones failing for good); each step bounded in time."""
        try:
            await asyncio.wait_for(self.stop(), within)
        except Exception as error:  # noqa: BLE001 - closing a broken client may fail too; new ones are made anyway
            log.info("consumer_lag_close_failed", error=repr(error))
        self._admin = self._offsets = None
        await asyncio.wait_for(self.start(), within)

    async def measure(self) -> dict[TopicPartition, int]:
        partitions = [TopicPartition(t, p) for t in self.topics
                      for p in sorted(self._offsets.partitions_for_topic(t) or ())]
        if not partitions:  # metadata not loaded yet
            await self._offsets._client.force_metadata_update()  # noqa: SLF001 - no public refresh
            partitions = [TopicPartition(t, p) for t in self.topics
                          for p in sorted(self._offsets.partitions_for_topic(t) or ())]
        committed = await self._admin.list_consumer_group_offsets(self.group, partitions=partitions)
        ends = self.ends = await self._offsets.end_offsets(partitions)
        starts = await self._offsets.beginning_offsets(partitions)
        lag = {}
        for tp in partitions:
            done = committed.get(tp)
            # Never committed: the group starts from the earliest offset still in the log.
            position = done.offset if done is not None and done.offset >= 0 else starts[tp]
            lag[tp] = max(ends[tp] - position, 0)
        return lag

    async def publish(self) -> None:
        try:
            self.last = await self.measure()
            self.measured_at = time.monotonic()
        except Exception:
            # A broker restart can leave these clients failing for good with NodeNotReadyError (aiokafka#1133,
            # #703): new ones connect afresh. The consumer watchdog needs this measure most right then.
            await self.reconnect()
            raise
        for tp, value in self.last.items():
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(value)


@dataclass
class BacklogMetrics:
    """The loop of one service process; a failing source is logged and read again at the next pass."""

    engine: AsyncEngine
    clock: Clock
    timer_kinds: Callable[[], Iterable[str]]
    lag: ConsumerLag | None
    interval: float

    async def update(self) -> None:
        sources = [read_outbox(self.engine, self.clock),
                   read_timers(self.engine, self.clock, self.timer_kinds())]
        if self.lag is not None:
            sources.append(self.lag.publish())
        for result in await asyncio.gather(*sources, return_exceptions=True):
            if isinstance(result, Exception):
                log.warning("backlog_metrics_failed", error=repr(result))

    async def run(self) -> None:
        if self.lag is not None:
            await self.lag.start()
        try:
            while True:
                await self.update()
                await asyncio.sleep(self.interval)
        finally:
            if self.lag is not None:
                await self.lag.stop()
