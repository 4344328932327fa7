"""bonuses by client and day: GiveBonus sums a client's bonuses of the day (BONUS_MAX_PER_CLIENT_PER_DAY)

Revision ID: e9a4c2b7d153
Revises: d2b7f0c4e861
Create Date: 2026-12-02 02:25:00
"""
from typing import Sequence, Union

from alembic import op

revision: str = 'e9a4c2b7d153'
down_revision: Union[str, None] = 'd2b7f0c4e861'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index('bonuses_by_client_day', 'bonuses', ['client_id', 'business_date', 'currency'], unique=False)


def downgrade() -> None:
    op.drop_index('bonuses_by_client_day', table_name='bonuses')
