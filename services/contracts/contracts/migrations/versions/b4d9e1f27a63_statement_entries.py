"""a contract's statement: the money movements escrow reported, per milestone and bonus

Revision ID: b4d9e1f27a63
Revises: 872a20281862
Create Date: 2026-12-02 01:35:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'b4d9e1f27a63'
down_revision: Union[str, None] = '872a20281862'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('statement_entries',
    sa.Column('entry_id', sa.String(length=300), nullable=False),
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('item_kind', sa.String(length=20), nullable=False),
    sa.Column('item_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('entry_id')
    )
    op.create_index(op.f('ix_statement_entries_contract_id'), 'statement_entries', ['contract_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_statement_entries_contract_id'), table_name='statement_entries')
    op.drop_table('statement_entries')
