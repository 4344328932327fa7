"""One database transaction for a state change, the inbox row that guards it and the messages it causes."""

import functools
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from platform_schemas import Envelope, Message, new_envelope
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from . import tracing
from .clock import Clock
from .errors import Rejected

InboxVerdict = Literal["new", "duplicate", "conflict"]
TRACE_KEY = "_trace."  # prefix of the trace context kept in a timer's payload


def fingerprint(envelope: Envelope) -> str:
    body = json.dumps([envelope.type, envelope.subject, envelope.actor, envelope.data], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class Cause:
    """The message being handled: events it causes inherit its correlation id and actor."""

    message_id: str
    correlation_id: str
    actor: str

    @classmethod
    def of(cls, envelope: Envelope) -> "Cause":
        return cls(envelope.id, envelope.correlationid or envelope.id, envelope.actor)


@dataclass
class Outgoing:
    topic: str
    envelope: Envelope
    payload: bytes | None = None  # the envelope as written to the outbox (serialized once, when published)


@dataclass
class UnitOfWork:
    """`async with uow:` opens a transaction; `await uow.commit()` writes the outbox and commits."""

    session_factory: async_sessionmaker[AsyncSession]
    tables: dict[str, Table]
    service: str
    clock: Clock
    notify_channel: str
    cause: Cause | None = None
    max_message_bytes: int = 1_000_000
    outgoing: list[Outgoing] = field(default_factory=list)
    # A command dispatched in this transaction gets a savepoint of its own, so that its rejection undoes only
    # its writes. The consumer turns it off for a batch's first try (dispatch.py, consumer.py).
    savepoint_per_message: bool = True
    # The transaction's connection. Repositories run Core statements on it directly: through the ORM
    # session each statement cost about 0.2 ms more CPU on the benchmark machine, for nothing used here.
    session: AsyncConnection = field(init=False)
    _orm: AsyncSession = field(init=False)

    async def __aenter__(self) -> "UnitOfWork":
        self._orm = self.session_factory()
        await self._orm.begin()
        self.session = await self._orm.connection()
        self.outgoing = []
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._orm.in_transaction():
            await self._orm.rollback()
        await self._orm.close()

    # -- messages ------------------------------------------------------------------------------
    def publish(self, topic: str, data: Message, *, subject: str, actor: str | None = None,
                event_id: str | None = None) -> Envelope:
        """Queue an event or command for the outbox; it is written at commit, in this transaction."""
        cause = self.cause
        envelope = new_envelope(
            data, subject=subject, source=self.service, id=event_id,
            actor=actor or (cause.actor if cause else "system"),
            correlationid=cause.correlation_id if cause else None,
            causationid=cause.message_id if cause else None,
            time=self.clock.now(),
            **tracing.current(),  # the trace of the message being handled goes on with what it causes
        )
        payload = envelope.to_json()
        if len(payload) > self.max_message_bytes:
            # Refused here, inside the handler: its command is rejected (or its step fails) and the outbox
            # never holds a row the broker would refuse, which would hold back the rows behind it.
            raise Rejected("too_large", f"{envelope.type} would be {len(payload)} bytes, more than the "
                                        f"{self.max_message_bytes} a message may have")
        self.outgoing.append(Outgoing(topic, envelope, payload))
        return envelope

    async def commit(self) -> None:
        if self.outgoing:
            outbox = self.tables["outbox"]
            await self.session.execute(insert(outbox), [
                {"event_id": o.envelope.id, "topic": o.topic, "key": o.envelope.subject,
                 "type": o.envelope.type, "payload": o.payload or o.envelope.to_json()}
                for o in self.outgoing
            ])
            # Delivered to the relay's LISTEN only when this transaction commits.
            await self.session.execute(select(_pg_notify(self.notify_channel)))
        await self._orm.commit()
        self.outgoing = []

    # -- inbox ---------------------------------------------------------------------------------
    async def claim(self, envelope: Envelope, status: str = "accepted") -> InboxVerdict:
        """Record the message as processed, in this transaction; tells whether it was seen before."""
        inbox = self.tables["processed_messages"]
        print_ = fingerprint(envelope)
        claimed = await self.session.scalar(_claim(inbox), {
            "message_id": envelope.id, "type": envelope.type, "subject": envelope.subject, "actor": envelope.actor,
            "fingerprint": print_, "status": status, "processed_at": self.clock.now()})
        if claimed is not None:
            return "new"
        seen = await self.session.scalar(_fingerprint_of(inbox), {"b_message_id": envelope.id})
        return "duplicate" if seen == print_ else "conflict"

    async def remember(self, key: str, type_: str, subject: str, outcome: dict[str, Any]) -> None:
        """Keep an answer under a key of its own (e.g. a saga step answered as failed), in this transaction."""
        inbox = self.tables["processed_messages"]
        await self.session.execute(pg_insert(inbox).values(
            message_id=key, type=type_, subject=subject, actor="system", fingerprint="-", status="remembered",
            outcome=outcome, processed_at=self.clock.now()).on_conflict_do_nothing())

    async def recorded(self, key: str) -> dict[str, Any] | None:
        """The answer kept under `key`, if any."""
        inbox = self.tables["processed_messages"]
        return await self.session.scalar(select(inbox.c.outcome).where(inbox.c.message_id == key))

    async def set_command_status(self, command_id: str, status: str, outcome: dict[str, Any] | None = None) -> None:
        await self.session.execute(_set_status(self.tables["processed_messages"]),
                                   {"b_message_id": command_id, "b_status": status, "b_outcome": outcome})

    # -- timers --------------------------------------------------------------------------------
    async def schedule(self, timer_id: str, kind: str, subject: str, due_at: datetime,
                       payload: dict[str, Any]) -> None:
        timers = self.tables["timers"]
        await self.session.execute(
            pg_insert(timers).values(
                # The trace goes on when the timer fires (TimerRunner takes it out of the payload again).
                timer_id=timer_id, kind=kind, subject=subject, due_at=due_at, payload=payload | {
                    f"{TRACE_KEY}{k}": v for k, v in tracing.current().items()},
                correlation_id=self.cause.correlation_id if self.cause else None,
            ).on_conflict_do_nothing()
        )

    async def cancel_timers(self, subject: str, *kinds: str) -> None:
        """Cancel the pending timers of these kinds on this subject (a no-op for fired ones).

        A timer locked by a runner is firing right now: it is left alone, as if it had fired just
        before. Waiting for it would deadlock (the runner holds the timer and waits for the aggregate
        this transaction holds); its handler runs after this commit and must find nothing to do.
        """
        timers = self.tables["timers"]
        pending = (select(timers.c.timer_id)
                   .where(timers.c.subject == subject, timers.c.kind.in_(kinds),
                          timers.c.fired_at.is_(None), timers.c.cancelled_at.is_(None))
                   .with_for_update(skip_locked=True))
        await self.session.execute(
            update(timers).where(timers.c.timer_id.in_(pending)).values(cancelled_at=self.clock.now())
        )


# Built once per table: building a statement and its cache key anew for each message cost more CPU
# than executing it (about 1 ms against 0.15 ms).
@functools.cache
def _claim(inbox: Table):
    columns = ("message_id", "type", "subject", "actor", "fingerprint", "status", "processed_at")
    return (pg_insert(inbox).values({c: bindparam(c, type_=inbox.c[c].type) for c in columns})
            .on_conflict_do_nothing().returning(inbox.c.message_id))


@functools.cache
def _fingerprint_of(inbox: Table):
    return select(inbox.c.fingerprint).where(inbox.c.message_id == bindparam("b_message_id"))


@functools.cache
def _set_status(inbox: Table):
    return update(inbox).where(inbox.c.message_id == bindparam("b_message_id")).values(
        status=bindparam("b_status", type_=inbox.c.status.type),
        outcome=bindparam("b_outcome", type_=inbox.c.outcome.type))


def _pg_notify(channel: str):
    from sqlalchemy import func, literal

    return func.pg_notify(literal(channel), literal(""))
