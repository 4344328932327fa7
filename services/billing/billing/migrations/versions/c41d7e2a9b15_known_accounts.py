"""known accounts: who billing has heard of, so its per-account reads answer 404 for anyone else

Revision ID: c41d7e2a9b15
Revises: 8e2f4b7a1c35
Create Date: 2026-12-02 01:25:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'c41d7e2a9b15'
down_revision: Union[str, None] = '8e2f4b7a1c35'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('known_accounts',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id')
    )


def downgrade() -> None:
    op.drop_table('known_accounts')
