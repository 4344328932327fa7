"""Tables of the messaging runtime that every service's database has (outbox, inbox, timers)."""

from sqlalchemy import (
    BigInteger, Column, DateTime, Identity, Index, Integer, LargeBinary, MetaData, String, Table, Text, func,
)
from sqlalchemy.dialects.postgresql import JSONB


def add_runtime_tables(metadata: MetaData) -> None:
    """Declare outbox, processed_messages and timers on a service's own metadata."""
    Table(
        "outbox", metadata,
        # Commit order: the relay publishes by seq, so per subject Kafka sees the order of the commits.
        Column("seq", BigInteger, Identity(always=True), primary_key=True),
        Column("event_id", String(128), nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(200), nullable=False),
        Column("type", String(100), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("sent_at", DateTime(timezone=True)),
        Index("outbox_unsent", "seq", postgresql_where="sent_at IS NULL"),
    )
    Table(
        "processed_messages", metadata,
        Column("message_id", String(200), primary_key=True),
        Column("type", String(100), nullable=False),
        Column("subject", String(200), nullable=False),
        Column("actor", String(200), nullable=False),
        # sha256 of type, subject, actor and data: the same id with another body is a conflict.
        Column("fingerprint", String(64), nullable=False),
        Column("status", String(20), nullable=False),  # accepted | rejected | completed | seen
        Column("outcome", JSONB),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    Table(
        "timers", metadata,
        Column("timer_id", String(200), primary_key=True),
        Column("kind", String(50), nullable=False),
        Column("subject", String(200), nullable=False),
        Column("due_at", DateTime(timezone=True), nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("correlation_id", String(200)),
        Column("fired_at", DateTime(timezone=True)),
        Column("cancelled_at", DateTime(timezone=True)),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text),
        Index("timers_pending", "due_at", postgresql_where="fired_at IS NULL AND cancelled_at IS NULL"),
        # A transaction's cancellations find their timers by subject (UnitOfWork.cancel_timers), not by reading
        # every pending timer: a burst of sagas keeps thousands pending, a platform millions (auto-releases).
        # The same rows as timers_pending, under a predicate the planner cannot match to that index: with stale
        # statistics it took either for "a few rows" and read every pending timer (driver_sql._CANCEL).
        Index("timers_pending_by_subject", "subject", "kind",
              postgresql_where="coalesce(fired_at, cancelled_at) IS NULL"),
    )
