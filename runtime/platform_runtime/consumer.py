"""Kafka consumption with explicit offsets: commit only after the database commit; poison -> DLQ.

faststream delivers each fetched batch (AckPolicy.MANUAL: faststream itself never commits). The
batch is handled in one database transaction (a savepoint per message only when a command in it is
rejected, see `_handle`); if the batch fails, its messages are retried one by one so a poison message is isolated, retried with backoff
and dead-lettered after `max_attempts`. An unreachable database or gateway is retried
without limit instead: that is not the message's fault.
"""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from platform_schemas import Envelope, from_kafka
from pydantic import ValidationError

from . import logging as logs
from . import metrics, tracing
from .dead_letters import DeadLetters
from .errors import IsolationNeeded
from .faults import TransientFaults, is_transient
from .unit_of_work import UnitOfWork

log = logs.get_logger(__name__)
Dispatch = Callable[[Envelope, UnitOfWork], Awaitable[None]]
# Called once a message failed every attempt, before it is dead-lettered, in a transaction of its own:
# a saga participant answers the step as failed there (CommandDispatcher.give_up), so no saga waits on it.
GiveUp = Callable[[Envelope, BaseException, UnitOfWork], Awaitable[bool]]
__all__ = ["BatchProcessor", "commit_offsets", "is_transient", "read_batch", "rewind"]


@dataclass(eq=False)  # a processor is itself, not its fields: the consumer groups a batch's records by processor
class BatchProcessor:
    # The topic it reads; several joined by "+" when one dispatcher reads them (service.py: their records are one
    # batch, as if from one topic). Only for logs: metrics and spans name each record's own topic.
    topic: str
    dispatch: Dispatch
    new_uow: Callable[[], UnitOfWork]
    dead_letters: DeadLetters
    max_attempts: int
    backoff_seconds: float
    give_up: GiveUp | None = None
    faults: TransientFaults = field(default_factory=TransientFaults)  # readiness is red while one lasts
    # Events only: whether a type has a handler. A record whose `ce_type` header names a type without one is
    # skipped unparsed and outside any transaction (it would be ignored after the parse anyway).
    handles: Callable[[str], bool] | None = None
    # How the dispatcher's inbox records what it handles ("accepted" commands, "seen" events): a batch's
    # messages are then claimed in one statement before they are handled. None: each claims its own.
    claim_status: str | None = None
    # Reads what the batch's handlers will read, once for the batch (the dispatcher's `prefetch`).
    prefetch: Callable[[list[Envelope], UnitOfWork], Awaitable[None]] | None = None
    # The keys of answers kept in the inbox that the handlers will ask for, read in the claims' statement (the
    # dispatcher's `kept_answers`: a participant's steps answered as failed before).
    kept_answers: Callable[[list[Envelope], UnitOfWork], list[str]] | None = None

    async def process(self, records: list[ConsumerRecord]) -> dict[TopicPartition, int]:
        """Handle a batch; returns the offsets to commit (next offset per partition)."""
        parsed: list[tuple[ConsumerRecord, Envelope]] = []
        for record in records:
            if self.handles is not None and (event_type := ce_type(record)) and not self.handles(event_type):
                metrics.SKIPPED.labels(record.topic).inc()
                continue
            try:
                parsed.append((record, from_kafka(record.value, record.headers)))
            except ValidationError as error:
                await self.dead_letters.send(record, f"unparseable envelope: {error.errors()[0]['msg']}", 1)
                metrics.DEAD_LETTERED.labels(record.topic).inc()
        if parsed:
            await self._handle(parsed)
        for topic, count in Counter(r.topic for r in records).items():
            metrics.CONSUMED.labels(topic).inc(count)
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        return offsets

    async def _handle(self, batch: list[tuple[ConsumerRecord, Envelope]]) -> None:
        """The batch in one transaction, first without a savepoint per message; again with them if a command in
        it was rejected (only a savepoint undoes one command's writes alone); one by one if it failed."""
        try:
            try:
                await self._until_transient_passes(lambda: self._in_one_transaction(batch, savepoints=False))
            except IsolationNeeded:
                for topic in dict.fromkeys(r.topic for r, _ in batch):
                    metrics.BATCHES_REDONE.labels(topic).inc()
                await self._until_transient_passes(lambda: self._in_one_transaction(batch, savepoints=True))
        except Exception as error:  # noqa: BLE001 - any failure: isolate the message at fault
            log.warning("batch_failed_retrying_one_by_one", topic=self.topic, error=repr(error))
            for record, envelope in batch:
                await self._alone(record, envelope)

    async def _in_one_transaction(self, batch: list[tuple[ConsumerRecord, Envelope]], savepoints: bool = True) -> None:
        async with self.new_uow() as uow:
            uow.savepoint_per_message = savepoints
            await read_batch(uow, [e for _, e in batch if self.handles is None or self.handles(e.type)],
                             None if savepoints else self.claim_status, self.prefetch, self.kept_answers)
            for record, envelope in batch:
                # The message's trace context is current while it is handled: what it causes carries it on.
                with tracing.span(f"handle {envelope.type}", {
                        "traceparent": envelope.traceparent, "tracestate": envelope.tracestate},
                        **{"messaging.system": "kafka", "messaging.destination.name": record.topic,
                           "messaging.message.id": envelope.id, "cloudevents.event_type": envelope.type,
                           "cloudevents.event_subject": envelope.subject, "correlation_id": envelope.correlationid}):
                    logs.bind(message_id=envelope.id, correlation_id=envelope.correlationid,
                              causation_id=envelope.causationid, message_type=envelope.type,
                              trace_id=tracing.trace_id())
                    await self.dispatch(envelope, uow)
            await uow.commit()

    async def _alone(self, record: ConsumerRecord, envelope: Envelope) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self._until_transient_passes(lambda: self._in_one_transaction([(record, envelope)]))
                return
            except Exception as error:  # noqa: BLE001
                log.warning("message_failed", topic=record.topic, attempt=attempt, error=repr(error),
                            message_id=envelope.id, exc_info=attempt == self.max_attempts)
                if attempt == self.max_attempts:
                    await self._answer_failed(envelope, error)
                    await self.dead_letters.send(record, repr(error), attempt)
                    metrics.DEAD_LETTERED.labels(record.topic).inc()
                    return
                await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))

    async def _answer_failed(self, envelope: Envelope, error: BaseException) -> None:
        if self.give_up is None:
            return

        async def answer() -> None:
            async with self.new_uow() as uow:
                if await self.give_up(envelope, error, uow):
                    await uow.commit()

        try:
            await self._until_transient_passes(answer)
        except Exception as failure:  # noqa: BLE001 - the dead letter still records the message
            log.error("failure_reply_not_sent", message_id=envelope.id, error=repr(failure))

    async def _until_transient_passes(self, work: Callable[[], Awaitable[None]]) -> None:
        """Retry a dependency's fault (by SQLSTATE, see faults.py) with backoff, without limit and without
        counting it against the message; anything else is raised for the caller to count."""
        delay = self.backoff_seconds
        while True:
            try:
                result = await work()
                self.faults.recovered()
                return result
            except Exception as error:
                if not is_transient(error):
                    self.faults.recovered()  # the dependency answered: the fault is the message's
                    raise
                self.faults.failed(error)
                log.warning("transient_failure_retrying", error=repr(error), fault=self.faults.last_error,
                            retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


async def read_batch(uow: UnitOfWork, handled: list[Envelope], claim_status: str | None,
                     prefetch: Callable[[list[Envelope], UnitOfWork], Awaitable[None]] | None,
                     kept_answers: Callable[[list[Envelope], UnitOfWork], list[str]] | None = None) -> None:
    """Before a batch's messages are handled: their inbox claims in one statement (on a try without savepoints),
    with the answers kept that their handlers will ask for (even for a lone message: one round trip, not two),
    then the dispatcher's `prefetch` of what their handlers will read, for a batch of two or more."""
    if claim_status:
        await uow.claim_all(handled, claim_status, kept_answers(handled, uow) if kept_answers is not None else ())
    if prefetch is not None and len(handled) > 1:
        await prefetch(handled, uow)


def ce_type(record: ConsumerRecord) -> str | None:
    """The record's `ce_type` header (set by the outbox relay in either content mode), if any."""
    for name, value in record.headers or ():
        if name == "ce_type" and value:
            return value.decode("utf-8", errors="replace")
    return None


async def commit_offsets(consumer, offsets: dict[TopicPartition, int]) -> None:
    """Commit exactly these offsets; after a rebalance the new owner redoes the batch (idempotently)."""
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError) as error:
        log.warning("offset_commit_failed_after_rebalance", error=repr(error))


def rewind(consumer, records: list[ConsumerRecord]) -> None:
    """Seek back to the first record of each partition so nothing fetched is skipped."""
    first: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        first[tp] = min(first.get(tp, record.offset), record.offset)
    for tp, offset in first.items():
        try:
            consumer.seek(tp, offset)
        except IllegalStateError:
            pass  # no longer ours; the new owner starts from the committed offset
