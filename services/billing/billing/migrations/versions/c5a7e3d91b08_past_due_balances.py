"""past-due balances: declined bonus charges retried by the next daily batches

Revision ID: c5a7e3d91b08
Revises: f4af3519d011
Create Date: 2026-12-02 01:45:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'c5a7e3d91b08'
down_revision: Union[str, None] = 'f4af3519d011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('bonuses', sa.Column('past_due_until', sa.Date(), nullable=True))
    op.create_index('bonuses_past_due', 'bonuses', ['client_id'], unique=False,
                    postgresql_where=sa.text("status = 'past_due'"))
    op.add_column('bonus_batches', sa.Column('past_due', sa.Integer(), nullable=True))
    op.create_table('past_due_balances',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('retry_until', sa.Date(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'currency')
    )


def downgrade() -> None:
    op.drop_table('past_due_balances')
    op.drop_column('bonus_batches', 'past_due')
    op.drop_index('bonuses_past_due', table_name='bonuses', postgresql_where=sa.text("status = 'past_due'"))
    op.drop_column('bonuses', 'past_due_until')
