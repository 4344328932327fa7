"""Changes every service's database needs: to the runtime's own tables (tables.py: outbox, processed_messages,
timers), and autovacuum's settings on all its tables. Written once here, each applied by a revision in every
service's `migrations/` (its own chain)."""

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


# Autovacuum's automatic ANALYZE, per table (issue 10, twenty-fourth step). PostgreSQL analyses a table once
# 50 rows + a tenth of it have changed: a table of a few thousand rows, which every new database has for its first
# hours, is analysed at nearly every autovacuum round (every 5 s here, and on every saga's path a table gains rows).
# Each ANALYZE costs 10-25 ms of a worker's CPU and makes every connection plan that table's statements again.
# At 10,000 changes + a tenth, a small table is analysed every 10,000 changes, which its statements' plans (by key,
# or by a partial index) do not need more often; one of 100,000 rows after 20,000 changes (10,050 by default), one
# of 1,000,000 or more nearly as by default (110,000 against 100,050). A queue (the outbox) is never analysed: its
# rows live for moments, the statistics of an instant describe nothing, and vacuum keeps its row count for the
# planner.
ANALYSE_AFTER_CHANGES = 10_000
NEVER = 2_147_483_647  # the largest threshold PostgreSQL accepts
QUEUES = ("outbox",)


def _tables() -> list[str]:
    """Every table of the database as the migrations have left it so far, but Alembic's own."""
    rows = op.get_bind().execute(sa.text(
        "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace = current_schema()::regnamespace"
        " AND relname <> :version_table ORDER BY relname"), {"version_table": op.get_context().version_table})
    return list(rows.scalars())


def analyse_after_many_changes() -> None:
    """The threshold above on every table the service's database has (its outbox: never). A revision that creates a
    table later calls it again (tests/integration/test_autovacuum_analyse.py checks every table at head)."""
    for table in _tables():
        threshold = NEVER if table in QUEUES else ANALYSE_AFTER_CHANGES
        op.execute(f'ALTER TABLE "{table}" SET (autovacuum_analyze_threshold = {threshold})')


def analyse_as_postgres_does() -> None:
    for table in _tables():
        op.execute(f'ALTER TABLE "{table}" RESET (autovacuum_analyze_threshold)')
