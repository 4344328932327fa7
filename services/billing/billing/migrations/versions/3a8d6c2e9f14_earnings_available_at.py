"""earnings security period: when each earning in the history becomes available

Revision ID: 3a8d6c2e9f14
Revises: f937cc17a12a
Create Date: 2026-12-02 01:25:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '3a8d6c2e9f14'
down_revision: Union[str, None] = 'f937cc17a12a'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('transactions', sa.Column('available_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('transactions', 'available_at')
