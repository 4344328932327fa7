"""timers_pending_by_subject: a cancellation finds its timers by subject, not by reading every pending timer

The runtime's cancellations (UnitOfWork.cancel_timers) looked pending timers up through the index by due date,
reading every pending timer (platform_runtime/runtime_migrations.py, the same in every service's database).

Revision ID: e5b9c2d7a418
Revises: a8d2f6c1e409
Create Date: 2026-12-03 14:30:00
"""
from typing import Sequence, Union

from platform_runtime.runtime_migrations import add_timers_pending_by_subject, drop_timers_pending_by_subject

revision: str = 'e5b9c2d7a418'
down_revision: Union[str, None] = 'a8d2f6c1e409'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    add_timers_pending_by_subject()


def downgrade() -> None:
    drop_timers_pending_by_subject()
