"""One service process: Kafka consumers, outbox relay, timers and HTTP, started and stopped together."""

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from sqlalchemy import MetaData, Table
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from . import kafka_security
from . import logging as logs
from . import metrics, tracing
from .asyncpg_checks import use_builtin_container_checks
from .backlog_metrics import BacklogMetrics, ConsumerLag
from .clock import Clock, SystemClock
from .context import ContextFactory, HandlerContext
from .consumer import BatchProcessor, GiveUp, rewind
from .consumer_watchdog import ConsumerWatchdog, StallDetector
from .dead_letters import DeadLetters
from .faults import TransientFaults
from .fetch_sessions import use_fetch_sessions
from .heap import freeze_what_started
from .http import base_app, database_answers, routes_without_scope
from .http_auth import TokenHashes
from .offsets import OffsetCommitter
from .priority import yield_cpu
from .relay import OutboxRelay, new_producer, notify_channel
from .settings import ServiceSettings
from .context import TimerHandler
from .database import new_engine
from .timers import TimerRunner
from .unit_of_work import UnitOfWork

log = logs.get_logger(__name__)


# What a subscription takes from its dispatcher unless given: a command dispatcher has no `handles` (every command
# is answered, an unknown one with its rejection).
FROM_DISPATCHER = ("handles", "claim_status", "prefetch", "kept_answers")


@dataclass
class Subscription:
    """A topic the service consumes and the dispatcher (commands or events) that handles it; `give_up`
    answers a message that failed every attempt before it is dead-lettered (saga participants)."""

    topic: str
    dispatch: Callable[..., Awaitable[None]]
    give_up: GiveUp | None = None
    # Whether an event type has a handler (records of other types are skipped unparsed); by default the
    # EventDispatcher's own. None for commands: every command is answered, an unknown one with its rejection.
    handles: Callable[[str], bool] | None = None
    # The inbox status the dispatcher records ("accepted", "seen"): the consumer claims a batch at once.
    claim_status: str | None = None
    # What the batch's handlers will read, read once for the batch: by default the dispatcher's own.
    prefetch: Callable[..., Awaitable[None]] | None = None
    # The keys of answers the batch's handlers will ask for, read with the claims: by default the dispatcher's.
    kept_answers: Callable[..., list[str]] | None = None

    def __post_init__(self) -> None:
        owner = getattr(self.dispatch, "__self__", None)
        for name in FROM_DISPATCHER:
            if getattr(self, name) is None:
                setattr(self, name, getattr(owner, name, None))

    def handling(self) -> dict[str, Any]:
        """How the consumer handles this topic's records: the BatchProcessor's arguments that come from here. Two
        subscriptions that answer the same are one dispatcher's topics (by_dispatcher)."""
        return {"dispatch": self.dispatch, "give_up": self.give_up, **{n: getattr(self, n) for n in FROM_DISPATCHER}}


async def plain_context(runtime: "Runtime") -> ContextFactory:
    return HandlerContext


@dataclass
class ServiceDefinition:
    """A service, declared: its bootstrap fills this in; `context` builds, once at start, the factory of
    the context every handler receives (its repositories, ports such as a gateway, settings, clock)."""

    name: str
    metadata: MetaData
    settings_type: type[ServiceSettings]
    migrations_dir: Path
    subscriptions: Callable[["Runtime"], list[Subscription]]
    context: Callable[["Runtime"], Awaitable[ContextFactory]] = plain_context
    routers: Callable[["Runtime"], list[APIRouter]] = lambda runtime: []
    timers: Callable[["Runtime"], dict[str, TimerHandler]] = lambda runtime: {}
    background: Callable[["Runtime"], list[Callable[[], Awaitable[None]]]] = lambda runtime: []
    on_start: Callable[["Runtime"], Awaitable[None]] | None = None
    # More schema work of `migrate`, after the service's own revisions (billing: the gateway simulator's tables).
    after_migrate: Callable[[], None] | None = None


@dataclass
class Runtime:
    """Everything a service builds once at start (cosmicpython's bootstrap), handed to its parts."""

    definition: ServiceDefinition
    settings: ServiceSettings
    engine: AsyncEngine
    clock: Clock
    session_factory: async_sessionmaker = field(init=False)
    producer: AIOKafkaProducer | None = None
    new_context: ContextFactory = HandlerContext
    subscriber: Any = None
    last_batch_at: float = field(default_factory=time.monotonic)
    faults: TransientFaults = field(default_factory=TransientFaults)
    group_lag: ConsumerLag | None = None  # the broker's view, measured by the backlog metrics
    handling_batch: bool = False
    stall: StallDetector = field(init=False)
    offsets: OffsetCommitter = field(init=False)
    # A service's own long-lived parts that its background loops and its routes share (billing: one count of a
    # running bonus batch's progress for both), by name.
    shared: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.session_factory = async_sessionmaker(self.engine, expire_on_commit=False)
        self.stall = StallDetector(self.settings.consumer_stall_after.total_seconds())
        self.offsets = OffsetCommitter(self.settings.consumer_commit_interval.total_seconds())

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def tables(self) -> dict[str, Table]:
        return self.definition.metadata.tables

    def new_uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine, self.tables, self.name, self.clock, notify_channel(self.name),
                          max_message_bytes=self.settings.max_message_bytes)

    async def readiness(self) -> dict[str, bool]:
        kafka_ok = self.producer is not None and not self.producer._closed  # noqa: SLF001
        return {"database": await database_answers(self.session_factory), "kafka": kafka_ok,
                "consuming": not self.consumer_stalled(), "no_transient_fault": self.faults.ok}

    def consumer_stalled(self) -> bool:
        """Lag but no batch for a while (consumer_watchdog.py): aiokafka can stop fetching after a broker restart."""
        return self.stall.stalled

    def assigned_lag(self) -> int:
        """Records waiting on the partitions this consumer holds, by the log ends the broker reported lately (a
        consumer that stopped fetching no longer learns of new records itself) against the consumer's own
        positions (not the committed offsets: a commit lost in a broker restart is no stall). Without a recent
        report (the broker is down, or the lag clients are being made anew) there is no verdict: 0."""
        consumer, lag = getattr(self.subscriber, "consumer", None), self.group_lag
        recent = 3 * self.settings.metrics_interval.total_seconds() + 5
        if consumer is None or lag is None or lag.measured_at is None or time.monotonic() - lag.measured_at > recent:
            return 0
        try:
            assigned = consumer.assignment()
            assignment = consumer._subscription.subscription.assignment  # noqa: SLF001 - no public position API
        except AttributeError:  # not subscribed (yet): nothing to say
            return 0
        waiting = 0
        for tp in assigned:
            state = assignment.state_value(tp)
            end = max(lag.ends.get(tp, 0), consumer.highwater(tp) or 0)
            if state is not None and state.has_valid_position:
                waiting += max(end - state.position, 0)
        return waiting

    async def restart_consumer(self, within: float = 60.0) -> None:
        """Stop and start the consumer: it leaves the group, joins again and resumes from the committed offsets.
        Each step is bounded. A consumer that cannot even stop may still heartbeat and hold its partitions: a second
        one beside it would leave them unread, unseen by the watchdog. So the process ends instead and its
        supervisor starts it again (offsets are committed only after the database commit: nothing is lost). A start
        that fails is tried again by the watchdog's next look."""
        subscriber = self.subscriber
        with contextlib.suppress(Exception):  # what was done is committed first; if not, it is read again
            await asyncio.wait_for(self.offsets.flush(), within)
        try:
            await asyncio.wait_for(subscriber.stop(), within)
        except Exception as error:  # noqa: BLE001 - whatever kept it from stopping, it may still be in the group
            log.error("consumer_stop_failed_exiting", error=repr(error))
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(70)  # EX_SOFTWARE; no graceful stop: it would wait on the same stuck consumer
        await asyncio.wait_for(subscriber.start(), within)
        self.last_batch_at = time.monotonic()

    def consumer_watchdog(self) -> ConsumerWatchdog:
        return ConsumerWatchdog(
            self.stall, self.assigned_lag, lambda: self.last_batch_at, lambda: self.handling_batch,
            self.restart_consumer, interval=min(5.0, max(self.stall.after / 4, 0.5)))


def build_runtime(definition: ServiceDefinition, settings: ServiceSettings | None = None,
                  clock: Clock | None = None) -> Runtime:
    settings = settings or definition.settings_type()
    # asyncpg's container checks in C for the built-ins, the same answers (asyncpg_checks.py): here, where every
    # process that runs a service's units of work assembles them (the service, and the one-service CPU tools, which
    # run no lifespan and had measured asyncpg without them).
    use_builtin_container_checks()
    engine = new_engine(settings.database_url, settings.database_ping_after_idle.total_seconds())
    return Runtime(definition, settings, engine, clock or SystemClock())


def _subscribe(broker: KafkaBroker, runtime: Runtime, subscriptions: list[Subscription],
               dead_letters: DeadLetters) -> None:
    """One consumer (one group member) per service process, over all the topics it reads."""
    settings = runtime.settings
    processors: dict[str, BatchProcessor] = {}  # topic -> the processor of its dispatcher
    for group in by_dispatcher(subscriptions):
        processor = BatchProcessor(
            topic="+".join(g.topic for g in group), new_uow=runtime.new_uow, dead_letters=dead_letters,
            max_attempts=settings.consumer_max_attempts,
            backoff_seconds=settings.consumer_retry_backoff.total_seconds(), faults=runtime.faults,
            **group[0].handling())
        processors.update((g.topic, processor) for g in group)

    # MANUAL: faststream must not commit on its own (ACK_FIRST is at-most-once; ACK commits after
    # an exception). Offsets are committed below, explicitly, after the database commit.
    subscriber = broker.subscriber(
        *processors, group_id=runtime.name, batch=True, max_records=settings.consumer_max_records,
        batch_timeout_ms=settings.consumer_batch_timeout_ms, auto_offset_reset="earliest",
        fetch_min_bytes=settings.consumer_fetch_min_bytes, fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        ack_policy=AckPolicy.MANUAL, title=runtime.name, listener=runtime.offsets.rebalance_listener(),
        decoder=_records_as_they_are,
    )
    _fetch_without_idle_sleep(subscriber)
    runtime.subscriber = subscriber

    @subscriber
    async def consume(message: KafkaMessage) -> None:  # the decoder's answer: the fetched batch itself
        records = list(message.raw_message) if isinstance(message.raw_message, tuple) else [message.raw_message]
        started = time.monotonic()
        offsets = {}
        runtime.handling_batch = True  # until its offsets are handed over: the watchdog never restarts mid-batch
        try:
            try:
                for processor, its_records in per_processor(processors, records).items():
                    offsets.update(await processor.process(its_records))
            except BaseException:
                rewind(message.consumer, records)  # fetched but not done: read again, never skipped
                raise
            await runtime.offsets.done(message.consumer, offsets)  # committed soon after (offsets.py)
        finally:
            runtime.handling_batch = False
        runtime.last_batch_at = time.monotonic()
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)


def by_dispatcher(subscriptions: list[Subscription]) -> list[list[Subscription]]:
    """The subscriptions grouped by the dispatcher that handles them, in their order. A dispatcher's topics are
    read as one: a fetched batch's records of all of them are handled in one transaction, as a batch of one topic
    carrying every type that dispatcher handles would be (contracts' replies from billing and escrow,
    notifications' events). Only what the dispatcher reads ahead for a batch is shared, and it is written for any
    mix of its own types; topics of different dispatchers keep a transaction each, since one's read-ahead knows
    nothing of what another's handlers change."""
    groups: dict[tuple, list[Subscription]] = {}
    for s in subscriptions:
        groups.setdefault(tuple(s.handling().values()), []).append(s)
    return list(groups.values())


def per_processor(processors: dict[str, BatchProcessor], records: list) -> dict[BatchProcessor, list]:
    """A fetched batch's records split by the processor of their topic, in the order of their first record."""
    split: dict[BatchProcessor, list] = {}
    for record in records:
        split.setdefault(processors[record.topic], []).append(record)
    return split


async def _records_as_they_are(message: KafkaMessage) -> KafkaMessage:
    """faststream's batch decoder would parse every record's JSON (and build a message object for each) before the
    handler, which reads the records themselves (`message.raw_message`) and parses each envelope once, or not at all
    for an event type it skips: the handler is given the fetched message as it is. (The broker runs without
    fast_depends, `apply_types=False`, so the decoder's answer is the handler's one argument.)"""
    return message


def _fetch_without_idle_sleep(subscriber) -> None:
    """faststream's batch subscriber sleeps batch_timeout_ms more after a fetch that brought nothing, so a
    record arriving then waits up to that long, at every hop of a saga. aiokafka's getmany already waits
    for records and returns as soon as any arrive: the loop needs no sleep of its own."""
    if not hasattr(subscriber, "get_msg"):  # another faststream: keep its loop as it is
        log.warning("faststream_batch_fetch_not_replaced")
        return

    async def get_msg(consumer) -> tuple:
        fetched = await consumer.getmany(timeout_ms=subscriber.batch_timeout_ms, max_records=subscriber.max_records)
        return tuple(chain.from_iterable(fetched.values()))

    subscriber.get_msg = get_msg


def create_app(definition: ServiceDefinition, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or build_runtime(definition)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        settings = runtime.settings
        use_fetch_sessions(settings.kafka_fetch_sessions)
        runtime.producer = new_producer(settings.kafka_bootstrap_servers, settings.producer_linger_ms, runtime.name,
                                        max_batch_size=settings.producer_max_batch_bytes,
                                        **kafka_security.client_options(settings))
        await runtime.producer.start()
        # apply_types=False: no fast_depends around the handler. With it, the handler's `Context("message")`
        # argument was resolved by a synchronous function that fast_depends runs in a worker thread: a thread
        # hand-off for every fetched batch (5-10 % of a service's CPU at one message a batch, py-spy).
        broker = KafkaBroker(settings.kafka_bootstrap_servers, graceful_timeout=15.0, logger=None, apply_types=False,
                             security=kafka_security.broker_security(settings))
        dead_letters = DeadLetters(runtime.producer, runtime.name)
        if definition.on_start:
            await definition.on_start(runtime)
        runtime.new_context = await definition.context(runtime)
        subscriptions = definition.subscriptions(runtime)
        _subscribe(broker, runtime, subscriptions, dead_letters)
        relay = OutboxRelay(settings.database_url, runtime.producer, runtime.name,
                            settings.relay_batch_size, settings.relay_idle_check.total_seconds(),
                            standby_poll=settings.relay_standby_poll.total_seconds())
        timer_handlers = definition.timers(runtime)
        timers = TimerRunner(runtime.new_uow, timer_handlers, runtime.clock,
                             settings.timer_poll_interval.total_seconds(), context=runtime.new_context)
        runtime.group_lag = ConsumerLag(settings.kafka_bootstrap_servers, runtime.name,
                                        [s.topic for s in subscriptions], kafka_security.client_options(settings))
        backlog = BacklogMetrics(runtime.engine, runtime.clock, timer_handlers.keys, runtime.group_lag,
                                 settings.metrics_interval.total_seconds())
        loops = [relay.run, timers.run, backlog.run, runtime.offsets.run, *definition.background(runtime)]
        tasks = [asyncio.create_task(loop(), name=getattr(loop, "__qualname__", "loop")) for loop in loops]
        watchdog = asyncio.create_task(runtime.consumer_watchdog().run(), name="consumer_watchdog")
        if settings.gc_freeze_at_start:  # last before consuming: everything built so far lives as long as we do
            log.info("heap_frozen", objects=freeze_what_started())
        await broker.start()
        log.info("service_started", port=settings.http_port)
        try:
            yield
        finally:
            log.info("service_stopping")
            watchdog.cancel()  # first: it must not start the consumer again while the service stops
            await asyncio.gather(watchdog, return_exceptions=True)
            runtime.offsets.closing = True  # the batch in hand, if any, commits its offsets itself
            with contextlib.suppress(Exception):
                await runtime.offsets.flush()
            await broker.stop()  # waits for in-flight batches, whose offsets commit after their DB commit
            relay.stop()  # let the relay finish its pass: cancelled mid-send, it would republish on restart
            if relay.active:
                await asyncio.wait([tasks[0]], timeout=10)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runtime.producer.stop()
            await runtime.engine.dispose()
            log.info("service_stopped")

    app = base_app(definition.name, lifespan, TokenHashes.parse(runtime.settings.http_token_hashes))
    app.state.runtime = runtime
    for router in definition.routers(runtime):
        app.include_router(router)
    if unscoped := routes_without_scope(app, definition.name):
        raise RuntimeError(f"{definition.name}: routes without a scope in read_scopes.py: {', '.join(unscoped)}")
    return app


def serve(definition: ServiceDefinition) -> None:
    settings = definition.settings_type()
    logs.configure(definition.name, settings.log_level)
    if niceness := settings.process_niceness:
        log.info("process_niceness", niceness=yield_cpu(niceness))
    if tracing.configure(definition.name, settings.tracing_enabled, settings.otel_exporter_otlp_endpoint,
                         settings.tracing_file):
        log.info("tracing_enabled", otlp=settings.otel_exporter_otlp_endpoint, file=settings.tracing_file)
    app = create_app(definition, build_runtime(definition, settings))
    # uvicorn turns SIGTERM/SIGINT into the lifespan shutdown above: graceful stop.
    # Idle keep-alive connections are kept longer than clients keep theirs (httpx: 5 s, like uvicorn's default):
    # with equal timeouts a client may reuse a connection the server is closing that instant (httpx.ReadError).
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False,
                timeout_graceful_shutdown=20, timeout_keep_alive=75, loop=settings.event_loop)
