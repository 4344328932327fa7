"""timers_pending_by_subject apart: a predicate of its own, so that a cancellation always probes it by subject

With the same predicate as timers_pending, stale statistics let the planner read every pending timer once per
cancelling statement (platform_runtime/runtime_migrations.py, the same in every service's database).

Revision ID: b6d2e8f4a197
Revises: a9d4e7f1c352
Create Date: 2026-12-05 07:00:00
"""
from typing import Sequence, Union

from platform_runtime.runtime_migrations import pending_by_subject_apart, pending_by_subject_shared

revision: str = 'b6d2e8f4a197'
down_revision: Union[str, None] = 'a9d4e7f1c352'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pending_by_subject_apart()


def downgrade() -> None:
    pending_by_subject_shared()
