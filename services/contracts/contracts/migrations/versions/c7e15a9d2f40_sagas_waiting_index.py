"""sagas still waiting (running or needs_attention), by how long: GET /sagas and the saga gauges

Revision ID: c7e15a9d2f40
Revises: a6e3c9d41f27
Create Date: 2026-12-02 01:40:00
"""
from typing import Sequence, Union

from alembic import op

revision: str = 'c7e15a9d2f40'
down_revision: Union[str, None] = 'a6e3c9d41f27'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index('sagas_waiting', 'sagas', ['status', 'updated_at', 'saga_id'], unique=False,
                    postgresql_where="status IN ('running', 'needs_attention')")


def downgrade() -> None:
    op.drop_index('sagas_waiting', table_name='sagas')
