"""gateway work keeps the W3C trace context of the saga command that asked for it

Revision ID: d7b1e5f0a2c6
Revises: c5a7e3d91b08
Create Date: 2026-12-02 03:00:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'd7b1e5f0a2c6'
down_revision: Union[str, None] = 'c5a7e3d91b08'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_TABLES = ('charges', 'refunds')


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column('traceparent', sa.String(length=55), nullable=True))
        op.add_column(table, sa.Column('tracestate', sa.String(length=512), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        op.drop_column(table, 'tracestate')
        op.drop_column(table, 'traceparent')
