"""past-due balances of clients, as billing reports them

Revision ID: e8b2c4d6f013
Revises: 7c1e9d2a4b10
Create Date: 2026-12-02 02:00:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'e8b2c4d6f013'
down_revision: Union[str, None] = '7c1e9d2a4b10'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('past_due_balances',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'currency')
    )


def downgrade() -> None:
    op.drop_table('past_due_balances')
