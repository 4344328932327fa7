"""structured ledger keys: accounts as (kind, owner_id, sub_id, currency), postings as
(transaction kind, transaction id, leg), transactions and earnings as (kind, id)

Accounts and posting ids used to be strings joined with ':' from caller ids, so ids containing ':' or
equal to a word the code appended could name two things at once. Existing rows are converted: accounts
are parsed from their old names (an escrow account by its holding's contract and milestone ids), old
posting ids are kept as they were published.

Revision ID: 7c1e9d2a4b10
Revises: 7c1e5a9d2b40
Create Date: 2026-12-02 01:20:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '7c1e9d2a4b10'
down_revision: Union[str, None] = '7c1e5a9d2b40'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# An old account name, parsed: kind, owner, sub. Gateway `gateway:<cur>`; client and freelancer
# `<kind>:<id>:<cur>`; escrow `escrow:<contract>:<milestone>`, resolved through the holdings.
_PARSE = """
    CREATE TEMPORARY TABLE account_names ON COMMIT DROP AS
    WITH names AS (
        SELECT debit_account AS name, currency FROM postings_v1
        UNION SELECT credit_account, currency FROM postings_v1
        UNION SELECT account, currency FROM account_balances_v1)
    SELECT n.name, n.currency, split_part(n.name, ':', 1) AS kind,
           CASE split_part(n.name, ':', 1)
               WHEN 'gateway' THEN ''
               WHEN 'escrow' THEN coalesce(h.contract_id, substr(n.name, 8))
               ELSE substr(n.name, length(split_part(n.name, ':', 1)) + 2,
                           length(n.name) - length(split_part(n.name, ':', 1)) - 5) END AS owner_id,
           CASE WHEN split_part(n.name, ':', 1) = 'escrow' THEN coalesce(h.milestone_id, '') ELSE '' END AS sub_id
    FROM names n
    LEFT JOIN LATERAL (SELECT contract_id, milestone_id FROM holdings
                       WHERE 'escrow:' || contract_id || ':' || milestone_id = n.name LIMIT 1) h
           ON split_part(n.name, ':', 1) = 'escrow'
"""


def upgrade() -> None:
    op.drop_index('postings_by_transaction', table_name='postings')
    op.rename_table('postings', 'postings_v1')
    op.rename_table('account_balances', 'account_balances_v1')
    op.execute("ALTER TABLE postings_v1 DROP CONSTRAINT postings_transaction_id_fkey")
    op.execute("ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_pkey")
    op.create_primary_key('ledger_transactions_pkey', 'ledger_transactions', ['kind', 'transaction_id'])
    op.execute("ALTER TABLE earnings DROP CONSTRAINT earnings_pkey")
    op.create_primary_key('earnings_pkey', 'earnings', ['kind', 'earning_id'])
    op.create_table(
        'account_balances',
        sa.Column('kind', sa.String(length=30), nullable=False),
        sa.Column('owner_id', sa.String(length=64), nullable=False),
        sa.Column('sub_id', sa.String(length=64), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('balance', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('kind', 'owner_id', 'sub_id', 'currency'),
    )
    account = lambda p: [sa.Column(f'{p}kind', sa.String(length=30), nullable=False),  # noqa: E731
                         sa.Column(f'{p}owner_id', sa.String(length=64), nullable=False),
                         sa.Column(f'{p}sub_id', sa.String(length=64), nullable=False)]
    op.create_table(
        'postings',
        sa.Column('transaction_kind', sa.String(length=30), nullable=False),
        sa.Column('transaction_id', sa.String(length=200), nullable=False),
        sa.Column('leg', sa.Integer(), nullable=False),
        sa.Column('posting_id', sa.String(length=250), nullable=False),
        *account('debit_'), *account('credit_'),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint('amount > 0'),
        sa.ForeignKeyConstraint(['transaction_kind', 'transaction_id'],
                                ['ledger_transactions.kind', 'ledger_transactions.transaction_id']),
        sa.PrimaryKeyConstraint('transaction_kind', 'transaction_id', 'leg'),
        sa.UniqueConstraint('posting_id'),
    )
    op.execute(_PARSE)
    op.execute("""
        INSERT INTO account_balances (kind, owner_id, sub_id, currency, balance)
        SELECT n.kind, n.owner_id, n.sub_id, b.currency, sum(b.balance)
        FROM account_balances_v1 b JOIN account_names n ON n.name = b.account AND n.currency = b.currency
        GROUP BY 1, 2, 3, 4
    """)
    op.execute("""
        INSERT INTO postings (transaction_kind, transaction_id, leg, posting_id, debit_kind, debit_owner_id,
                              debit_sub_id, credit_kind, credit_owner_id, credit_sub_id, amount, currency, created_at)
        SELECT t.kind, p.transaction_id,
               (row_number() OVER (PARTITION BY p.transaction_id ORDER BY p.created_at, p.posting_id)) - 1,
               p.posting_id, d.kind, d.owner_id, d.sub_id, c.kind, c.owner_id, c.sub_id, p.amount, p.currency,
               p.created_at
        FROM postings_v1 p
        JOIN ledger_transactions t ON t.transaction_id = p.transaction_id
        JOIN account_names d ON d.name = p.debit_account AND d.currency = p.currency
        JOIN account_names c ON c.name = p.credit_account AND c.currency = p.currency
    """)
    op.drop_table('postings_v1')
    op.drop_table('account_balances_v1')


def downgrade() -> None:
    raise NotImplementedError("the joined-string ledger keys were ambiguous; there is no way back to them")
