"""Billing's database: billing methods, charges, refunds, transaction history."""

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, Text, func

from platform_runtime.tables import add_runtime_tables

metadata = MetaData()
add_runtime_tables(metadata)

billing_methods = Table(
    "billing_methods", metadata,
    Column("billing_method_id", String(64), primary_key=True),
    Column("account_id", String(64), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("token", String(200), nullable=False),
    Column("is_primary", Boolean, nullable=False, server_default="false"),
    Column("added_at", DateTime(timezone=True), nullable=False),
    Column("removed_at", DateTime(timezone=True)),
)
Index("one_primary_per_account", billing_methods.c.account_id, unique=True,
      postgresql_where=billing_methods.c.is_primary & billing_methods.c.removed_at.is_(None))

charges = Table(
    "charges", metadata,
    Column("charge_id", String(200), primary_key=True),  # the saga step id = the gateway idempotency key
    Column("saga_id", String(200), nullable=False),
    Column("contract_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=False, index=True),
    Column("billing_method_id", String(64)),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("purpose", String(20), nullable=False),
    Column("status", String(20), nullable=False),  # succeeded | failed
    Column("gateway_reference", String(200)),
    Column("reason_code", String(50)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

refunds = Table(
    "refunds", metadata,
    Column("refund_id", String(200), primary_key=True),
    Column("charge_id", String(200), nullable=False),
    Column("saga_id", String(200), nullable=False),
    Column("contract_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("milestone_id", String(64)),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(20), nullable=False),  # refunding | refunded
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("gateway_reference", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

client_charge_streaks = Table(
    "client_charge_streaks", metadata,
    Column("client_id", String(64), primary_key=True),
    Column("consecutive_failures", Integer, nullable=False),
)

transactions = Table(
    "transactions", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("transaction_id", String(250), nullable=False, unique=True),
    Column("account_id", String(64), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("description", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),  # signed from the account holder's side
    Column("currency", String(3), nullable=False),
    Column("contract_id", String(64)),
    Column("milestone_id", String(64)),
    Column("bonus_id", String(64)),
)
Index("transactions_by_account", transactions.c.account_id, transactions.c.occurred_at, transactions.c.seq)
