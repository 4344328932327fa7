"""what is coming up: pending bonuses found by client and by freelancer

Revision ID: d2b7f0c4e861
Revises: c7e15a9d2f40
Create Date: 2026-12-02 01:45:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'd2b7f0c4e861'
down_revision: Union[str, None] = 'c7e15a9d2f40'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index('bonuses_pending_by_client', 'bonuses', ['client_id'], unique=False,
                    postgresql_where=sa.text("status = 'pending'"))
    op.create_index('bonuses_pending_by_freelancer', 'bonuses', ['freelancer_id'], unique=False,
                    postgresql_where=sa.text("status = 'pending'"))


def downgrade() -> None:
    op.drop_index('bonuses_pending_by_freelancer', table_name='bonuses', postgresql_where=sa.text("status = 'pending'"))
    op.drop_index('bonuses_pending_by_client', table_name='bonuses', postgresql_where=sa.text("status = 'pending'"))
