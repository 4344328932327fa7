"""notifications_awaiting_names: a notification that named someone before their registration was handled waits for
the name (domain/names.py)

Two nullable columns, NULL for every notification written before (they had every name they would get), and a
partial index of the few rows that wait.

Revision ID: c3d9e2f1a7b4
Revises: b6e1f4a8d273
Create Date: 2026-12-04 22:30:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'c3d9e2f1a7b4'
down_revision: Union[str, None] = 'b6e1f4a8d273'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('notifications', sa.Column('awaiting_names', postgresql.ARRAY(sa.String(length=64)), nullable=True))
    op.add_column('notifications', sa.Column('render_values', postgresql.JSONB(), nullable=True))
    op.create_index('notifications_awaiting_names', 'notifications', ['awaiting_names'], unique=False,
                    postgresql_using='gin', postgresql_where=sa.text('awaiting_names IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('notifications_awaiting_names', table_name='notifications',
                  postgresql_using='gin', postgresql_where=sa.text('awaiting_names IS NOT NULL'))
    op.drop_column('notifications', 'render_values')
    op.drop_column('notifications', 'awaiting_names')
