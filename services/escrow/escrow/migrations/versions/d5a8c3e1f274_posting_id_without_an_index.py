"""a posting's id has no unique index of its own: the primary key (kind, transaction id, leg) is its uniqueness

The id is derived from those three (`ledger.TransactionId.posting_id`: a version-5 UUID of them, 122 bits of SHA-1),
so the primary key already keeps one posting per id. Rows converted from the joined-string keys
(7c1e9d2a4b10) kept their old ids, each with a ':' in it, which a derived id never has. No statement looks a
posting up by its id: the index was only written, one random-key entry per posting (two per bonus, three per
fund saga): 186 MB in a batch of 1,000,000 bonuses, and about a fifth of the backend's CPU and WAL for the
batch's ledger inserts (issue 10, thirty-second step).

Revision ID: d5a8c3e1f274
Revises: 9e4a2c7b1f56
Create Date: 2026-12-07 11:40:00
"""
from typing import Sequence, Union

from alembic import op

revision: str = 'd5a8c3e1f274'
down_revision: Union[str, None] = '9e4a2c7b1f56'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.drop_constraint('postings_posting_id_key', 'postings', type_='unique')


def downgrade() -> None:
    op.create_unique_constraint('postings_posting_id_key', 'postings', ['posting_id'])
