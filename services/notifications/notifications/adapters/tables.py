"""Notifications' database: projections of people and contracts (from events), and every notification."""

from sqlalchemy import (
    BigInteger, Column, DateTime, Identity, Index, Integer, MetaData, String, Table, Text, UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from platform_runtime.tables import add_runtime_tables

metadata = MetaData()
add_runtime_tables(metadata)

# Projections, built from contracts.events only: this service never reads another's database.
accounts = Table(
    "accounts", metadata,
    Column("account_id", String(64), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
)

contracts = Table(
    "contracts", metadata,
    Column("contract_id", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("freelancer_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("title", String(200)),  # only OfferSent carries it
)

milestones = Table(
    "milestones", metadata,
    Column("milestone_id", String(64), primary_key=True),
    Column("contract_id", String(64), nullable=False),
    Column("title", String(200), nullable=False),
    Column("amount", BigInteger, nullable=False),
)

notifications = Table(
    "notifications", metadata,
    Column("seq", BigInteger, Identity(always=True), nullable=False, unique=True),  # list order and cursor
    Column("notification_id", String(36), primary_key=True),
    Column("event_id", String(128), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("kind", String(50), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("channel", String(10), nullable=False),  # email | in_app
    Column("contract_id", String(64)),
    Column("subject", Text, nullable=False),
    Column("body_text", Text, nullable=False),
    Column("body_html", Text),
    Column("status", String(10), nullable=False),  # in_app: delivered; email: pending -> sent | failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
    # Whose names the text lacks (their registration not handled yet, domain/names.py), and the values it was
    # rendered from, kept to render it again when they come; both NULL once every name is in.
    Column("awaiting_names", ARRAY(String(64))),
    Column("render_values", JSONB),
    # One notification per event, person and channel, however often the event is delivered.
    UniqueConstraint("event_id", "account_id", "channel", name="one_notification_per_event_recipient_channel"),
)
Index("notifications_by_account", notifications.c.account_id, notifications.c.seq.desc())
Index("emails_due", notifications.c.next_attempt_at, postgresql_where=notifications.c.status == "pending")
# A registration looks up the notifications waiting for its name: few, so a partial index.
Index("notifications_awaiting_names", notifications.c.awaiting_names, postgresql_using="gin",
      postgresql_where=notifications.c.awaiting_names.isnot(None))
