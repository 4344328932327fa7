"""Fixed SQL text for the hot path, run on the transaction's own asyncpg connection.

Through SQLAlchemy Core each statement of a fund saga cost more CPU in compiling its parameters, processing
its result and switching greenlets than PostgreSQL took to run it; as fixed text on asyncpg it is prepared
once per connection (asyncpg's statement cache) and costs a bind and an execute (the runtime's pattern:
platform_runtime/driver_sql.py). The text is built once, at import, from the tables (adapters/tables.py), so
the columns and their types are named in one place.

A statement of several parts (`compose`) numbers its parameters in the order of its parts: each part's
template marks its parameters `$?`, and the caller gives the values in the same order.
"""

import re
from functools import cache

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql

from platform_runtime import driver_sql

_DIALECT = postgresql.dialect()


# The asyncpg connection under a unit of work's connection (or a read's session), its transaction begun.
driver = driver_sql.in_transaction
# A write whose answer the caller does not need: it may run with the batch's others (driver_sql.write_later).
write_later = driver_sql.write_later
# A write whose run of its kind may go as one set-based statement with the batch's others (driver_sql).
write_together = driver_sql.write_together
# A statement with array parameters that PostgreSQL should plan once, not at every execution (driver_sql).
planned_once = driver_sql.planned_once


def pg_type(table: Table, column: str) -> str:
    return table.c[column].type.compile(dialect=_DIALECT)


def names(columns: list[str], prefix: str = "") -> str:
    return ", ".join(f"{prefix}{c}" for c in columns)


def unnest(table: Table, columns: list[str], alias: str, **more: str) -> str:
    """`unnest($?::type[], ...) AS alias(columns...)`: rows given as one array per column (and `more`, name:
    type, after them)."""
    types = [pg_type(table, c) for c in columns] + list(more.values())
    return (f"unnest({', '.join(f'$?::{t}[]' for t in types)}) AS {alias}({names([*columns, *more])})")


def placeholders(count: int) -> str:
    return ", ".join(["$?"] * count)


@cache
def compose(parts: tuple[str, ...], final: str) -> str:
    """`WITH part, part ... final`, its `$?` numbered in order (built once per shape), planned once: a save's
    arrays (its milestones, its statement's entries) read so that PostgreSQL keeps one generic plan for it
    (driver_sql.planned_once; each part writes or probes its rows by key, whatever their number)."""
    text = ("WITH " + ",\n".join(parts) + "\n" if parts else "") + final
    counter = iter(range(1, text.count("$?") + 1))
    return planned_once(re.sub(r"\$\?", lambda _: f"${next(counter)}", text))
