"""The contracts service's database: accounts, contracts, milestones, bonuses, sagas."""

from sqlalchemy import (
    BigInteger, Boolean, Column, Date, DateTime, ForeignKey, Index, Integer, MetaData, String, Table, Text, func, text,
)
from sqlalchemy.dialects.postgresql import JSONB

from platform_runtime.tables import add_runtime_tables

metadata = MetaData()
add_runtime_tables(metadata)

accounts = Table(
    "accounts", metadata,
    Column("account_id", String(64), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("status", String(20), nullable=False),
    Column("status_reason", Text),
    Column("appealable", Boolean),
    Column("reactivation_requested", Boolean, nullable=False, server_default="false"),
    Column("reactivation_requested_at", DateTime(timezone=True)),
    Column("last_activity_at", DateTime(timezone=True)),
    Column("past_due", JSONB, nullable=False, server_default="{}"),  # currency -> owed (billing's events)
    # currency -> billing's version of the balance applied last: an older event arriving late is ignored
    Column("past_due_versions", JSONB, nullable=False, server_default="{}"),
    Column("registered_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

contracts = Table(
    "contracts", metadata,
    Column("contract_id", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False, index=True),
    Column("freelancer_id", String(64), nullable=False, index=True),
    Column("title", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("deposit", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("cancel_reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
)

milestones = Table(
    "milestones", metadata,
    # Ids are unique across the platform, so a milestone id alone names it.
    Column("milestone_id", String(64), primary_key=True),
    Column("contract_id", String(64), ForeignKey("contracts.contract_id"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("title", String(200), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("due_date", Date),
    Column("status", String(20), nullable=False),
    Column("review_due_at", DateTime(timezone=True)),
    Column("respond_by", DateTime(timezone=True)),
    Column("charge_id", String(200)),
    Column("released_amount", BigInteger, nullable=False, server_default="0"),
    Column("refunded_amount", BigInteger, nullable=False, server_default="0"),
    Column("removed", Boolean, nullable=False, server_default="false"),
)

milestone_history = Table(
    "milestone_history", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("milestone_id", String(64), nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("event", String(100), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

sagas = Table(
    "sagas", metadata,
    Column("saga_id", String(100), primary_key=True),
    Column("kind", String(20), nullable=False),  # fund | release | refund
    Column("contract_id", String(64), nullable=False, index=True),
    Column("command_id", String(200)),  # what started it: its status completes with the saga
    Column("status", String(20), nullable=False),
    Column("step", String(30), nullable=False),
    Column("data", JSONB, nullable=False),
    Column("step_log", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Sagas still waiting, by how long since they last moved: GET /sagas and the saga gauges.
    Index("sagas_waiting", "status", "updated_at", "saga_id",
          postgresql_where=text("status IN ('running', 'needs_attention')")),
)

bonuses = Table(
    "bonuses", metadata,
    Column("bonus_id", String(64), primary_key=True),
    Column("contract_id", String(64), ForeignKey("contracts.contract_id"), nullable=False, index=True),
    Column("client_id", String(64), nullable=False),
    Column("freelancer_id", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("note", Text, nullable=False),
    Column("business_date", Date, nullable=False),
    Column("given_at", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False),  # pending | paid | failed (as billing's batch reports)
    Column("reason_code", String(50)),
    Column("settled_at", DateTime(timezone=True)),
)
# GiveBonus sums a client's bonuses of the day (BONUS_MAX_PER_CLIENT_PER_DAY).
Index("bonuses_by_client_day", bonuses.c.client_id, bonuses.c.business_date, bonuses.c.currency)

# Money movements of each contract's milestones and bonuses, from escrow's events: the statement's source.
statement_entries = Table(
    "statement_entries", metadata,
    Column("entry_id", String(300), primary_key=True),
    Column("contract_id", String(64), nullable=False, index=True),
    Column("item_kind", String(20), nullable=False),  # milestone | bonus
    Column("item_id", String(64), nullable=False),
    Column("kind", String(20), nullable=False),  # funded | released | refunded | available
    Column("amount", BigInteger, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("available_at", DateTime(timezone=True)),
)

disputes = Table(
    "disputes", metadata,  # one per disputed milestone; administrators' queue of open ones
    Column("milestone_id", String(64), primary_key=True),
    Column("contract_id", String(64), ForeignKey("contracts.contract_id"), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("freelancer_id", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("resolve_by", DateTime(timezone=True), nullable=False),
    Column("overdue_at", DateTime(timezone=True)),
    Column("resolved_at", DateTime(timezone=True)),
)
Index("disputes_open_oldest_first", disputes.c.opened_at, disputes.c.milestone_id,
      postgresql_where=disputes.c.resolved_at.is_(None))
Index("reactivation_requests_oldest_first", accounts.c.reactivation_requested_at, accounts.c.account_id,
      postgresql_where=accounts.c.reactivation_requested)
Index("bonuses_pending_by_client", bonuses.c.client_id, postgresql_where=bonuses.c.status == "pending")
Index("bonuses_pending_by_freelancer", bonuses.c.freelancer_id, postgresql_where=bonuses.c.status == "pending")
