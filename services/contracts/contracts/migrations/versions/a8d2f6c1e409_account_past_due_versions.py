"""accounts keep billing's version of each past-due balance, so an older PastDueBalanceChanged arriving late is
ignored

Revision ID: a8d2f6c1e409
Revises: d1f3a5b7c902
Create Date: 2026-12-02 07:30:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'a8d2f6c1e409'
down_revision: Union[str, None] = 'd1f3a5b7c902'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('accounts', sa.Column('past_due_versions', postgresql.JSONB(astext_type=sa.Text()),
                                        server_default='{}', nullable=False))


def downgrade() -> None:
    op.drop_column('accounts', 'past_due_versions')
