"""earnings security period: the earnings table (pending until available_at)

Revision ID: 7c1e5a9d2b40
Revises: 380dfa3dee56
Create Date: 2026-12-02 01:20:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '7c1e5a9d2b40'
down_revision: Union[str, None] = '380dfa3dee56'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('earnings',
    sa.Column('earning_id', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('milestone_id', sa.String(length=64), nullable=True),
    sa.Column('bonus_id', sa.String(length=64), nullable=True),
    sa.Column('freelancer_id', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('pending', sa.BigInteger(), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('made_available_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('amount > 0'),
    sa.CheckConstraint('pending >= 0'),
    sa.PrimaryKeyConstraint('earning_id')
    )
    op.create_index('earnings_by_freelancer', 'earnings', ['freelancer_id', 'currency'], unique=False)


def downgrade() -> None:
    op.drop_index('earnings_by_freelancer', table_name='earnings')
    op.drop_table('earnings')
