"""autovacuum analyses a table after 10,000 changes + a tenth of it, the outbox never: not at every round

A table of a few thousand rows was analysed at nearly every autovacuum round, each time costing a worker's CPU and
making every connection plan its statements again (platform_runtime/runtime_migrations.py, the same in every
service's database).

Revision ID: 6c3f9a1e5d28
Revises: f2c8a5d1e746
Create Date: 2026-12-06 14:00:00
"""
from typing import Sequence, Union

from platform_runtime.runtime_migrations import analyse_after_many_changes, analyse_as_postgres_does

revision: str = '6c3f9a1e5d28'
down_revision: Union[str, None] = 'f2c8a5d1e746'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    analyse_after_many_changes()


def downgrade() -> None:
    analyse_as_postgres_does()
