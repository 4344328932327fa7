"""charged once daily: the charge date of each bonus charge, one per client, currency and day

Revision ID: 8e2f4b7a1c35
Revises: 3a8d6c2e9f14
Create Date: 2026-12-02 01:30:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '8e2f4b7a1c35'
down_revision: Union[str, None] = '3a8d6c2e9f14'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('bonus_charges', sa.Column('charge_date', sa.Date(), nullable=True))
    # Charges made before the rule: the day of their batch's start (several on one day stay as they were).
    op.execute("UPDATE bonus_charges c SET charge_date = (b.started_at AT TIME ZONE 'UTC')::date "
               "FROM bonus_batches b WHERE b.business_date = c.business_date")
    op.execute("UPDATE bonus_charges SET charge_date = business_date + 1 WHERE charge_date IS NULL")
    op.execute("""UPDATE bonus_charges c SET charge_date = NULL WHERE EXISTS (
                  SELECT 1 FROM bonus_charges o WHERE o.client_id = c.client_id AND o.currency = c.currency
                  AND o.charge_date = c.charge_date AND o.charge_id < c.charge_id)""")
    op.execute("UPDATE bonus_charges SET charge_date = business_date WHERE charge_date IS NULL")
    op.alter_column('bonus_charges', 'charge_date', nullable=False)
    op.create_index('one_bonus_charge_a_day', 'bonus_charges', ['client_id', 'currency', 'charge_date'],
                    unique=True)


def downgrade() -> None:
    op.drop_index('one_bonus_charge_a_day', table_name='bonus_charges')
    op.drop_column('bonus_charges', 'charge_date')
