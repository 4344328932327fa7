"""bonuses_pending_by_client: the collect step takes pending bonuses by client, not by age

Taken by age, each chunk of 20,000 bonuses held nearly every client, so each client's charge row was written
once per chunk: 920,000 upserts for the 125,000 charges of a batch of 1,000,000 bonuses.

Revision ID: c9e4a7b2d15f
Revises: b8d2f6a3c917
Create Date: 2026-12-03 11:00:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'c9e4a7b2d15f'
down_revision: Union[str, None] = 'b8d2f6a3c917'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index('bonuses_pending_by_client', 'bonuses', ['client_id', 'currency', 'given_at'], unique=False,
                    postgresql_where=sa.text('batch_date IS NULL'))
    op.drop_index('bonuses_pending', table_name='bonuses', postgresql_where=sa.text('batch_date IS NULL'))


def downgrade() -> None:
    op.create_index('bonuses_pending', 'bonuses', ['given_at'], unique=False,
                    postgresql_where=sa.text('batch_date IS NULL'))
    op.drop_index('bonuses_pending_by_client', table_name='bonuses', postgresql_where=sa.text('batch_date IS NULL'))
