"""What each service asked of its database during a phase: commits, rollbacks and statements.

Counted by PostgreSQL itself, so they hold on a loaded machine where timings do not: `pg_stat_database`
(transactions of each benchmark database) and, where the server preloads it (deploy/local/postgres.sh does),
`pg_stat_statements` (statements executed, by database; BEGIN/COMMIT/SAVEPOINT included). Round trips are
what costs on this path (each is a write, a wake-up of the backend and a read), so "statements per saga" is
the figure the hot-path work tries to bring down, the CPU per saga follows it. With `track_planning` on (as
deploy/local/postgres.sh sets it) the plans made and their time are counted too: a prepared statement that
PostgreSQL plans again at every execution shows as about as many plans as statements (issue 10, twenty-second
step: planning had taken half as much of the databases' time as running the statements).

PostgreSQL publishes its statistics with a short delay (stats_fetch_consistency, pgstat flush at idle): the
snapshot after a phase is taken once the counts stopped moving, within a deadline.
"""

import asyncio
import time
from typing import NamedTuple

import asyncpg

_TRANSACTIONS = ("SELECT datname, xact_commit, xact_rollback FROM pg_stat_database"
                 " WHERE datname LIKE $1 || '%'")
_STATEMENTS = ("SELECT d.datname, sum(s.calls)::bigint, sum(s.plans)::bigint, sum(s.total_plan_time)"
               " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname LIKE $1 || '%'"
               " GROUP BY d.datname")


# Each statement's time, by database: which statements a phase's database time went to (`top_statements`).
class StatementCounts(NamedTuple):
    """One statement's counts so far, as pg_stat_statements keeps them (plans stay 0 without `track_planning`)."""

    calls: int
    exec_ms: float
    buffer_hits: int
    text: str  # its first words
    plans: int = 0
    plan_ms: float = 0.0


_STATEMENT_TIMES = ("SELECT d.datname, s.queryid, s.query, s.calls, s.total_exec_time, s.shared_blks_hit, s.plans,"
                    " s.total_plan_time FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                    " WHERE d.datname LIKE $1 || '%' AND s.toplevel")


async def snapshot(dsn: str, prefix: str) -> dict[str, dict[str, int]]:
    """database (without the prefix) -> commits, rollbacks and (when available) statements, plans and planning ms
    so far; and under "by statement", (database, queryid) -> calls, execution ms, buffer hits, the statement's first
    words, plans and planning ms (StatementCounts)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        counts = {r["datname"][len(prefix):]: {"commits": r["xact_commit"], "rollbacks": r["xact_rollback"]}
                  for r in await conn.fetch(_TRANSACTIONS, prefix)}
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")  # its view, in `postgres`
            for name, calls, plans, planning_ms in await conn.fetch(_STATEMENTS, prefix):
                counts.setdefault(name[len(prefix):], {}).update(statements=calls, plans=plans,
                                                                 planning_ms=planning_ms)
            counts["by statement"] = {
                (r["datname"][len(prefix):], r["queryid"]): StatementCounts(
                    r["calls"], r["total_exec_time"], r["shared_blks_hit"], " ".join(r["query"].split())[:100],
                    r["plans"], r["total_plan_time"])
                for r in await conn.fetch(_STATEMENT_TIMES, prefix)}
        except asyncpg.PostgresError:
            pass  # pg_stat_statements not loaded on this server: transactions only
        return counts
    finally:
        await conn.close()


async def settled_snapshot(dsn: str, prefix: str, deadline: float = 5.0) -> dict[str, dict[str, int]]:
    """A snapshot taken once two in a row agree (the server flushes its counters within about a second)."""
    previous, until = await snapshot(dsn, prefix), time.monotonic() + deadline
    while time.monotonic() < until:
        await asyncio.sleep(0.5)
        current = await snapshot(dsn, prefix)
        if current == previous:
            return current
        previous = current
    return previous


def per_saga(before: dict, after: dict, sagas: int, platform: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """The platform's databases' commits, rollbacks, statements, plans and planning ms per completed saga over the
    phase, and their sum as `platform`. Others sharing the prefix (the payment gateway's stand-in, the raw-limits
    scratch) are shown apart, not summed."""
    out = {}
    for name, counts in sorted((n, c) for n, c in after.items() if n != "by statement"):
        earlier = before.get(name, {})
        out[name] = {k: round((v - earlier.get(k, 0)) / sagas, 2) for k, v in counts.items()}
    ours = [out[name] for name in platform if name in out]
    if ours:
        out["platform"] = {k: round(sum(d.get(k, 0) for d in ours), 2)
                           for k in ("commits", "rollbacks", "statements", "plans", "planning_ms")
                           if any(k in d for d in ours)}
    return out


def top_statements(before: dict, after: dict, sagas: int, platform: tuple[str, ...], count: int = 8) -> list[dict]:
    """The platform's statements that took the most of the databases' time over the phase (execution and planning),
    per completed saga: where the database's share of a saga goes. Execution time is the executor's wall time: on a
    busy machine it includes waiting for a core, so the buffer hits (pages touched, a measure of work) are shown
    beside it, and the plans made (one per execution: planned every time)."""
    earlier, rows = before.get("by statement", {}), []
    for (database, queryid), now in after.get("by statement", {}).items():
        was = earlier.get((database, queryid), StatementCounts(0, 0.0, 0, now.text))
        if database in platform and now.calls > was.calls:
            rows.append({"database": database, "statement": now.text,
                         "calls_per_saga": round((now.calls - was.calls) / sagas, 3),
                         "exec_ms_per_saga": round((now.exec_ms - was.exec_ms) / sagas, 4),
                         "buffer_hits_per_saga": round((now.buffer_hits - was.buffer_hits) / sagas, 1),
                         "plans_per_saga": round((now.plans - was.plans) / sagas, 3),
                         "plan_ms_per_saga": round((now.plan_ms - was.plan_ms) / sagas, 4)})
    total = sum(r["exec_ms_per_saga"] for r in rows) or 1.0
    for r in rows:
        r["share_of_exec"] = round(r["exec_ms_per_saga"] / total, 3)
    return sorted(rows, key=lambda r: -(r["exec_ms_per_saga"] + r["plan_ms_per_saga"]))[:count]
