"""Escrow's database: the append-only postings, balances derived from them, holdings per milestone."""

from sqlalchemy import BigInteger, CheckConstraint, Column, DateTime, ForeignKey, Index, MetaData, String, Table, func

from platform_runtime.tables import add_runtime_tables

metadata = MetaData()
add_runtime_tables(metadata)

ledger_transactions = Table(
    "ledger_transactions", metadata,
    Column("transaction_id", String(200), primary_key=True),  # the saga step id: one effect per step
    Column("kind", String(30), nullable=False),  # fund | release | refund | bonus
    Column("contract_id", String(64), nullable=False, index=True),
    Column("milestone_id", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

postings = Table(
    "postings", metadata,
    Column("posting_id", String(250), primary_key=True),
    Column("transaction_id", String(200), ForeignKey("ledger_transactions.transaction_id"), nullable=False),
    Column("debit_account", String(200), nullable=False),
    Column("credit_account", String(200), nullable=False),
    Column("amount", BigInteger, CheckConstraint("amount > 0"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# A running total kept in the same transaction as the postings, for fast reads; the ledger check
# recomputes it from the postings.
account_balances = Table(
    "account_balances", metadata,
    Column("account", String(200), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("balance", BigInteger, nullable=False),
)

escrow_contracts = Table(
    "escrow_contracts", metadata,
    Column("contract_id", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
)

holdings = Table(
    "holdings", metadata,
    Column("contract_id", String(64), primary_key=True),
    Column("milestone_id", String(64), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("funded", BigInteger, nullable=False, server_default="0"),
    Column("released", BigInteger, nullable=False, server_default="0"),
    Column("refunded", BigInteger, nullable=False, server_default="0"),
    CheckConstraint("funded - released - refunded >= 0", name="holding_not_overdrawn"),
)
Index("postings_by_transaction", postings.c.transaction_id)

# Each release or bonus credited to a freelancer, while and after it is pending: the security-period
# timer moves what is left of it (`pending`) to the available account. The ledger check compares the
# pending accounts with the sum of these rows.
earnings = Table(
    "earnings", metadata,
    Column("earning_id", String(200), primary_key=True),  # the ledger transaction that credited it
    Column("kind", String(20), nullable=False),  # release | bonus
    Column("contract_id", String(64), nullable=False),
    Column("milestone_id", String(64)),
    Column("bonus_id", String(64)),
    Column("freelancer_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, CheckConstraint("amount > 0"), nullable=False),
    Column("pending", BigInteger, CheckConstraint("pending >= 0"), nullable=False),
    Column("released_at", DateTime(timezone=True), nullable=False),
    Column("available_at", DateTime(timezone=True), nullable=False),
    Column("made_available_at", DateTime(timezone=True)),
)
Index("earnings_by_freelancer", earnings.c.freelancer_id, earnings.c.currency)
