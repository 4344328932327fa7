"""Changes to the runtime's own tables (tables.py: outbox, processed_messages, timers), which every service's
database has: written once here, each applied by a revision in every service's `migrations/` (its own chain)."""

import sqlalchemy as sa
from alembic import op

_PENDING = sa.text("fired_at IS NULL AND cancelled_at IS NULL")


def add_timers_pending_by_subject() -> None:
    """A cancellation finds its timers by subject (UnitOfWork.cancel_timers), not by reading every pending one."""
    op.create_index("timers_pending_by_subject", "timers", ["subject", "kind"], unique=False,
                    postgresql_where=_PENDING)


def drop_timers_pending_by_subject() -> None:
    op.drop_index("timers_pending_by_subject", table_name="timers", postgresql_where=_PENDING)
