"""administrators' queues: disputes (open, overdue, resolved) and when a reactivation was requested

Revision ID: a6e3c9d41f27
Revises: b4d9e1f27a63
Create Date: 2026-12-02 01:30:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'a6e3c9d41f27'
down_revision: Union[str, None] = 'b4d9e1f27a63'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('accounts', sa.Column('reactivation_requested_at', sa.DateTime(timezone=True), nullable=True))
    # Requests made before this column existed wait in the queue as of now.
    op.execute("UPDATE accounts SET reactivation_requested_at = now() WHERE reactivation_requested")
    op.create_index('reactivation_requests_oldest_first', 'accounts', ['reactivation_requested_at', 'account_id'],
                    unique=False, postgresql_where=sa.text('reactivation_requested'))
    op.create_table('disputes',
    sa.Column('milestone_id', sa.String(length=64), nullable=False),
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('freelancer_id', sa.String(length=64), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolve_by', sa.DateTime(timezone=True), nullable=False),
    sa.Column('overdue_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.contract_id'], ),
    sa.PrimaryKeyConstraint('milestone_id')
    )
    # Disputes opened before: in the queue from when they were opened (their overdue flag shows in the queue;
    # no timer was armed for them, so no DisputeOverdue event).
    op.execute("""
        INSERT INTO disputes (milestone_id, contract_id, client_id, freelancer_id, amount, currency, opened_at,
                              resolve_by)
        SELECT m.milestone_id, c.contract_id, c.client_id, c.freelancer_id, m.amount, c.currency, h.at,
               h.at + interval '30 days'
        FROM milestones m JOIN contracts c USING (contract_id)
        JOIN LATERAL (SELECT max(at) AS at FROM milestone_history
                      WHERE milestone_id = m.milestone_id AND status = 'disputed') h ON h.at IS NOT NULL
        WHERE m.status = 'disputed'
    """)
    op.create_index('disputes_open_oldest_first', 'disputes', ['opened_at', 'milestone_id'], unique=False,
                    postgresql_where=sa.text('resolved_at IS NULL'))


def downgrade() -> None:
    op.drop_index('disputes_open_oldest_first', table_name='disputes', postgresql_where=sa.text('resolved_at IS NULL'))
    op.drop_table('disputes')
    op.drop_index('reactivation_requests_oldest_first', table_name='accounts',
                  postgresql_where=sa.text('reactivation_requested'))
    op.drop_column('accounts', 'reactivation_requested_at')
