"""past-due balances keep billing's version of them, so an older PastDueBalanceChanged arriving late is ignored

Revision ID: f1a4c8e2d637
Revises: e8b2c4d6f013
Create Date: 2026-12-02 07:30:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'f1a4c8e2d637'
down_revision: Union[str, None] = 'e8b2c4d6f013'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('past_due_balances', sa.Column('version', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column('past_due_balances', 'version')
