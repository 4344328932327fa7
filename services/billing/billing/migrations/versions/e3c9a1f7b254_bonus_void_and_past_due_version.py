"""a bonus charge given up unanswered is voided by its key (void_status); past-due balances carry a version

Revision ID: e3c9a1f7b254
Revises: d7b1e5f0a2c6
Create Date: 2026-12-02 07:30:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'e3c9a1f7b254'
down_revision: Union[str, None] = 'd7b1e5f0a2c6'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('bonus_charges', sa.Column('void_status', sa.String(length=20), nullable=True))
    op.create_index('bonus_charges_void_due', 'bonus_charges', ['retry_at'], unique=False,
                    postgresql_where=sa.text("void_status = 'pending'"))
    op.add_column('past_due_balances', sa.Column('version', sa.BigInteger(), server_default='0', nullable=False))


def downgrade() -> None:
    op.drop_column('past_due_balances', 'version')
    op.drop_index('bonus_charges_void_due', table_name='bonus_charges', postgresql_where=sa.text("void_status = 'pending'"))
    op.drop_column('bonus_charges', 'void_status')
