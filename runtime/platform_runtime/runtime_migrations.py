"""Changes to the runtime's own tables (tables.py: outbox, processed_messages, timers), which every service's
database has: written once here, each applied by a revision in every service's `migrations/` (its own chain)."""

import sqlalchemy as sa
from alembic import op

_PENDING = sa.text("fired_at IS NULL AND cancelled_at IS NULL")
# The same rows, written so that the planner cannot prove `timers_pending`'s predicate from it (tables.py).
_PENDING_BY_SUBJECT = sa.text("coalesce(fired_at, cancelled_at) IS NULL")


def add_timers_pending_by_subject() -> None:
    """A cancellation finds its timers by subject (UnitOfWork.cancel_timers), not by reading every pending one."""
    op.create_index("timers_pending_by_subject", "timers", ["subject", "kind"], unique=False,
                    postgresql_where=_PENDING)


def drop_timers_pending_by_subject() -> None:
    op.drop_index("timers_pending_by_subject", table_name="timers", postgresql_where=_PENDING)


def pending_by_subject_apart() -> None:
    """`timers_pending_by_subject` under a predicate of its own, so that a cancellation can only probe it by
    subject: with the same predicate as `timers_pending`, stale statistics (few pending timers at the last
    analyze, thousands in a burst) made the planner read every pending timer once per cancelling statement."""
    drop_timers_pending_by_subject()
    op.create_index("timers_pending_by_subject", "timers", ["subject", "kind"], unique=False,
                    postgresql_where=_PENDING_BY_SUBJECT)


def pending_by_subject_shared() -> None:
    op.drop_index("timers_pending_by_subject", table_name="timers", postgresql_where=_PENDING_BY_SUBJECT)
    add_timers_pending_by_subject()
