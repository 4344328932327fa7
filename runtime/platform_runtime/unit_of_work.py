"""One database transaction for a state change, the inbox row that guards it and the messages it causes."""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from platform_schemas import Envelope, Message
from platform_schemas.envelope import encode_new
import asyncpg
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import driver_sql, tracing
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


class Outgoing:
    """A message queued for the outbox: the bytes written there and the attributes its row names. The Envelope
    itself is parsed from the bytes only when something asks for it (tests, mostly): publishing does not build it."""

    __slots__ = ("topic", "id", "subject", "type", "payload", "_envelope")

    def __init__(self, topic: str, id: str, subject: str, type: str, payload: bytes) -> None:
        self.topic, self.id, self.subject, self.type, self.payload = topic, id, subject, type, payload
        self._envelope: Envelope | None = None

    @classmethod
    def of(cls, topic: str, envelope: Envelope) -> "Outgoing":
        """A message built as an Envelope already (the unit-of-work fakes)."""
        queued = cls(topic, envelope.id, envelope.subject, envelope.type, envelope.to_json())
        queued._envelope = envelope
        return queued

    @property
    def envelope(self) -> Envelope:
        if self._envelope is None:
            self._envelope = Envelope.model_validate_json(self.payload)
        return self._envelope


@dataclass(frozen=True)
class Checkpoint:
    """How much a unit of work had queued at a savepoint (UnitOfWork.checkpoint)."""

    outgoing: int
    scheduled: list[tuple]
    cancelled: int
    statuses: int


@dataclass
class UnitOfWork:
    """`async with uow:` opens a transaction; `await uow.commit()` writes the outbox and commits."""

    engine: AsyncEngine
    tables: dict[str, Table]
    service: str
    clock: Clock
    notify_channel: str
    cause: Cause | None = None
    max_message_bytes: int = 1_000_000
    outgoing: list[Outgoing] = field(default_factory=list)
    # Whether a command dispatched in this transaction gets a savepoint of its own (savepoint_per_message).
    _per_message: bool = field(default=True, init=False)
    # Queued for the commit's one statement (commit): timers scheduled, as rows, and (subject, kind) cancelled.
    _scheduled: list[tuple] = field(default_factory=list)
    _cancelled: list[tuple[str, str]] = field(default_factory=list)
    # Commands' final statuses (set_command_status), written at commit in the same statement: (id, status,
    # outcome as JSON text); the last one queued for an id is the one written.
    _statuses: list[tuple[str, str, str | None]] = field(default_factory=list)
    # A batch's claims made at once (claim_all): message id -> (verdict, status), answered by `claim`.
    _claimed: dict[str, tuple[InboxVerdict, str]] = field(default_factory=dict)
    # Answers kept under keys of their own (remember), as this transaction has read or written them: key ->
    # outcome, None when none is kept. `recorded` answers from here with no round trip.
    _kept: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    # What a dispatcher's `prefetch` read for the batch's handlers, under names of the service's choosing
    # (contracts: the sagas its replies answer, locked with their contracts in one statement).
    batch: dict[str, Any] = field(default_factory=dict)
    # The transaction's connection. Repositories run Core statements on it directly: through the ORM
    # session each statement cost about 0.2 ms more CPU on the benchmark machine, for nothing used here.
    session: AsyncConnection = field(init=False)

    async def __aenter__(self) -> "UnitOfWork":
        # A plain pooled connection and its transaction: no ORM session (its set-up, flush and close cost about a
        # third of a one-message batch's CPU in contracts, for nothing the repositories use).
        self.session = await self.engine.connect()
        await self.session.begin()
        self.outgoing, self._scheduled, self._cancelled, self._claimed = [], [], [], {}
        self._statuses, self.batch, self._kept = [], {}, {}
        self.savepoint_per_message = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.session.in_transaction():
                await self.session.rollback()
        finally:
            driver_sql.leave_writes_for_later(self.session, False)
            await self.session.close()

    @property
    def savepoint_per_message(self) -> bool:
        """A command dispatched in this transaction gets a savepoint of its own, so that its rejection undoes only
        its writes. The consumer turns it off for a batch's first try (dispatch.py, consumer.py); the batch's
        handlers may then leave writes whose answer they do not need for later (driver_sql.write_later), which
        run together before the next statement. With a savepoint per message each write runs at once, inside
        its message's savepoint."""
        return self._per_message

    @savepoint_per_message.setter
    def savepoint_per_message(self, on: bool) -> None:
        self._per_message = on
        driver_sql.leave_writes_for_later(self.session, not on)

    # -- messages ------------------------------------------------------------------------------
    def publish(self, topic: str, data: Message, *, subject: str, actor: str | None = None,
                event_id: str | None = None) -> Outgoing:
        """Queue an event or command for the outbox; it is written at commit, in this transaction."""
        cause = self.cause
        message_id, payload = encode_new(
            data, subject=subject, source=self.service, id=event_id,
            actor=actor or (cause.actor if cause else "system"),
            correlationid=cause.correlation_id if cause else None,
            causationid=cause.message_id if cause else None,
            time=self.clock.now(),
            **tracing.current(),  # the trace of the message being handled goes on with what it causes
        )
        type_name = type(data).__name__
        if len(payload) > self.max_message_bytes:
            # Refused here, inside the handler: its command is rejected (or its step fails) and the outbox
            # never holds a row the broker would refuse, which would hold back the rows behind it.
            raise Rejected("too_large", f"{type_name} would be {len(payload)} bytes, more than the "
                                        f"{self.max_message_bytes} a message may have")
        queued = Outgoing(topic, message_id, subject, type_name, payload)
        self.outgoing.append(queued)
        return queued

    async def commit(self) -> None:
        """Write what the transaction queued (timers cancelled and scheduled, commands' statuses, outbox rows: one
        statement, with the NOTIFY the relay gets only when this commits), then commit."""
        await driver_sql.write_what_is_left(self.session)  # the handlers' writes left for later go first
        cancel, schedule, outbox = self._cancelled, self._scheduled, self.outgoing
        statuses = {command_id: (status, outcome) for command_id, status, outcome in self._statuses}
        if cancel or schedule or outbox or statuses:
            args: list[Any] = []
            if cancel:
                args += [self.clock.now(), [subject for subject, _ in cancel], [kind for _, kind in cancel]]
            if schedule:
                args += [list(column) for column in zip(*schedule)]
            if statuses:
                args += [list(statuses), [s for s, _ in statuses.values()], [o for _, o in statuses.values()]]
            if outbox:
                args += [[o.id for o in outbox], [o.topic for o in outbox], [o.subject for o in outbox],
                         [o.type for o in outbox], [o.payload for o in outbox], self.notify_channel]
            conn = await self.driver()
            await conn.fetchval(driver_sql.write_at_commit(bool(cancel), bool(schedule), bool(statuses),
                                                           bool(outbox)), *args)
        await self.session.commit()
        self.outgoing, self._scheduled, self._cancelled, self._statuses = [], [], [], []

    def checkpoint(self) -> "Checkpoint":
        """What is queued so far, to go back to when a savepoint is rolled back (restore)."""
        return Checkpoint(len(self.outgoing), list(self._scheduled), len(self._cancelled), len(self._statuses))

    def restore(self, checkpoint: "Checkpoint") -> None:
        del self.outgoing[checkpoint.outgoing:]
        self._scheduled = checkpoint.scheduled
        del self._cancelled[checkpoint.cancelled:]
        del self._statuses[checkpoint.statuses:]

    async def driver(self) -> asyncpg.Connection:
        """The transaction's asyncpg connection, for the runtime's fixed statements (driver_sql.py)."""
        return await driver_sql.in_transaction(self.session)

    # -- inbox ---------------------------------------------------------------------------------
    async def claim(self, envelope: Envelope, status: str = "accepted") -> InboxVerdict:
        """Record the message as processed, in this transaction; tells whether it was seen before."""
        made = self._claimed.get(envelope.id)
        if made is not None and made[1] == status:
            del self._claimed[envelope.id]  # a second delivery in the same batch is a duplicate: asked below
            return made[0]
        print_ = fingerprint(envelope)
        conn = await self.driver()
        row = await conn.fetchrow(driver_sql.CLAIM, envelope.id, envelope.type, envelope.subject, envelope.actor,
                                  print_, status, self.clock.now())
        if row["claimed"] is not None:
            return "new"
        seen = row["seen"]
        if seen is None:  # claimed by a transaction that committed while this statement waited: not in its snapshot
            seen = await conn.fetchval("SELECT fingerprint FROM processed_messages WHERE message_id = $1", envelope.id)
        return "duplicate" if seen == print_ else "conflict"

    async def claim_all(self, envelopes: list[Envelope], status: str, kept: Sequence[str] = ()) -> None:
        """Claim a batch's messages in one statement, before they are handled: each one's `claim` then answers
        from what this found, with no round trip of its own. Only the first delivery of an id is claimed here.
        The answers kept under the keys `kept` are read in the same statement (`recorded` then answers them):
        for a lone saga step that is one round trip instead of two."""
        unique: dict[str, Envelope] = {}
        for envelope in envelopes:
            unique.setdefault(envelope.id, envelope)
        first = list(unique.values())
        keys = [key for key in dict.fromkeys(kept) if key not in self._kept]
        if len(first) < 2 and not keys:
            return  # one message and nothing to read with it: its own claim is one round trip too
        prints = {e.id: fingerprint(e) for e in first}
        conn = await self.driver()
        rows = await conn.fetch(driver_sql.CLAIM_ALL, [e.id for e in first], [e.type for e in first],
                                [e.subject for e in first], [e.actor for e in first], list(prints.values()), status,
                                self.clock.now(), keys)
        self._kept.update(dict.fromkeys(keys))
        for row in rows:
            if row["claimed"] is None:
                self._kept[row["id"]] = row["outcome"]
            elif row["claimed"]:
                self._claimed[row["id"]] = ("new", status)
            elif row["seen"] is not None:
                self._claimed[row["id"]] = ("duplicate" if row["seen"] == prints[row["id"]] else "conflict", status)

    async def remember(self, key: str, type_: str, subject: str, outcome: dict[str, Any]) -> None:
        """Keep an answer under a key of its own (e.g. a saga step answered as failed), in this transaction."""
        inbox = self.tables["processed_messages"]
        await self.session.execute(pg_insert(inbox).values(
            message_id=key, type=type_, subject=subject, actor="system", fingerprint="-", status="remembered",
            outcome=outcome, processed_at=self.clock.now()).on_conflict_do_nothing())
        if key in self._kept and self._kept[key] is None:
            self._kept[key] = outcome  # the first answer kept stays (DO NOTHING): only a missing one is new

    async def recorded(self, key: str) -> dict[str, Any] | None:
        """The answer kept under `key`, if any."""
        return (await self.recorded_many([key])).get(key)

    async def recorded_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The answers kept under these keys (those there are): those not read yet in this transaction, in one
        statement."""
        unread = [key for key in dict.fromkeys(keys) if key not in self._kept]
        if unread:
            conn = await self.driver()
            self._kept.update(dict.fromkeys(unread))
            self._kept.update((row["message_id"], row["outcome"]) for row in await conn.fetch(driver_sql.RECORDED, unread))
        return {key: self._kept[key] for key in keys if self._kept.get(key) is not None}

    async def set_command_status(self, command_id: str, status: str, outcome: dict[str, Any] | None = None) -> None:
        """A command's final status and outcome (GET /commands/{id}), written at commit with the outbox: a batch
        that completes many commands writes them in one statement."""
        self._statuses.append((command_id, status, None if outcome is None else json.dumps(outcome)))

    # -- timers --------------------------------------------------------------------------------
    async def schedule(self, timer_id: str, kind: str, subject: str, due_at: datetime,
                       payload: dict[str, Any]) -> None:
        """A durable timer, written at commit with the outbox (one statement for both)."""
        # The trace goes on when the timer fires (TimerRunner takes it out of the payload again).
        traced = payload | {f"{TRACE_KEY}{k}": v for k, v in tracing.current().items()}
        self._scheduled.append((timer_id, kind, subject, due_at, json.dumps(traced),
                                self.cause.correlation_id if self.cause else None))

    async def cancel_timers(self, subject: str, *kinds: str) -> None:
        """Cancel the pending timers of these kinds on this subject (a no-op for fired ones), at commit.

        Those this transaction scheduled are dropped before they are written; those committed before are
        cancelled by the commit's statement. A timer locked by a runner is firing right now: it is left alone,
        as if it had fired just before. Waiting for it would deadlock (the runner holds the timer and waits for
        the aggregate this transaction holds); its handler runs after this commit and must find nothing to do.
        """
        self._scheduled = [t for t in self._scheduled if not (t[2] == subject and t[1] in kinds)]
        self._cancelled += [(subject, kind) for kind in kinds]
