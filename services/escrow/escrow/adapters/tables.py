"""Escrow's database: the append-only postings, balances derived from them, holdings per milestone."""

from sqlalchemy import (
    BigInteger, CheckConstraint, Column, DateTime, ForeignKeyConstraint, Index, Integer, MetaData, String, Table, func,
)

from platform_runtime.tables import add_runtime_tables

metadata = MetaData()
add_runtime_tables(metadata)

ledger_transactions = Table(
    "ledger_transactions", metadata,
    # One effect per saga step (or bonus): the step id within its kind, never a string joined from ids.
    Column("kind", String(30), primary_key=True),  # fund | release | refund | bonus
    Column("transaction_id", String(200), primary_key=True),
    Column("contract_id", String(64), nullable=False, index=True),
    Column("milestone_id", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def _account_columns(prefix: str) -> list[Column]:
    """An account's identity as columns: kind, owner (account or contract id), sub (milestone id or "")."""
    return [Column(f"{prefix}kind", String(30), nullable=False),
            Column(f"{prefix}owner_id", String(64), nullable=False),
            Column(f"{prefix}sub_id", String(64), nullable=False)]


postings = Table(
    "postings", metadata,
    Column("transaction_kind", String(30), primary_key=True),
    Column("transaction_id", String(200), primary_key=True),
    Column("leg", Integer, primary_key=True),
    # Derived from the three above, so unique with them: no index of its own (migration d5a8c3e1f274).
    Column("posting_id", String(64), nullable=False),
    *_account_columns("debit_"),
    *_account_columns("credit_"),
    Column("amount", BigInteger, CheckConstraint("amount > 0"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ForeignKeyConstraint(["transaction_kind", "transaction_id"],
                         ["ledger_transactions.kind", "ledger_transactions.transaction_id"]),
)

# A running total kept in the same transaction as the postings, for fast reads; the ledger check
# recomputes it from the postings.
account_balances = Table(
    "account_balances", metadata,
    Column("kind", String(30), primary_key=True),
    Column("owner_id", String(64), primary_key=True),
    Column("sub_id", String(64), primary_key=True),
    Column("currency", String(3), primary_key=True),
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

# Each release or bonus credited to a freelancer, while and after it is pending: the security-period
# timer moves what is left of it (`pending`) to the available account. The ledger check compares the
# pending accounts with the sum of these rows. Keyed like the ledger transaction that credited it.
earnings = Table(
    "earnings", metadata,
    Column("kind", String(20), primary_key=True),  # release | bonus
    Column("earning_id", String(200), primary_key=True),  # the release step id or the bonus id
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

# What each client owes for declined bonus charges, as billing reports it (PastDueBalanceChanged): shown with
# the balances; not money the ledger holds, so not an account of it.
past_due_balances = Table(
    "past_due_balances", metadata,
    Column("client_id", String(64), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("amount", BigInteger, nullable=False),
    Column("version", BigInteger),  # billing's, of the event applied last (None: told by a billing without versions)
)
