"""past-due balance: what each client owes per currency, from billing's PastDueBalanceChanged

Revision ID: d1f3a5b7c902
Revises: e9a4c2b7d153
Create Date: 2026-12-02 01:55:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'd1f3a5b7c902'
down_revision: Union[str, None] = 'e9a4c2b7d153'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('accounts', sa.Column('past_due', postgresql.JSONB(astext_type=sa.Text()), server_default='{}',
                                        nullable=False))


def downgrade() -> None:
    op.drop_column('accounts', 'past_due')
