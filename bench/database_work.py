"""What each service asked of its database during a phase: commits, rollbacks and statements.

Counted by PostgreSQL itself, so they hold on a loaded machine where timings do not: `pg_stat_database`
(transactions of each benchmark database) and, where the server preloads it (deploy/local/postgres.sh does),
`pg_stat_statements` (statements executed, by database; BEGIN/COMMIT/SAVEPOINT included). Round trips are
what costs on this path (each is a write, a wake-up of the backend and a read), so "statements per saga" is
the figure the hot-path work tries to bring down, the CPU per saga follows it.

PostgreSQL publishes its statistics with a short delay (stats_fetch_consistency, pgstat flush at idle): the
snapshot after a phase is taken once the counts stopped moving, within a deadline.
"""

import asyncio
import time

import asyncpg

_TRANSACTIONS = ("SELECT datname, xact_commit, xact_rollback FROM pg_stat_database"
                 " WHERE datname LIKE $1 || '%'")
_STATEMENTS = ("SELECT d.datname, sum(s.calls)::bigint FROM pg_stat_statements s"
               " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname LIKE $1 || '%' GROUP BY d.datname")


async def snapshot(dsn: str, prefix: str) -> dict[str, dict[str, int]]:
    """database (without the prefix) -> commits, rollbacks and (when available) statements so far."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        counts = {r["datname"][len(prefix):]: {"commits": r["xact_commit"], "rollbacks": r["xact_rollback"]}
                  for r in await conn.fetch(_TRANSACTIONS, prefix)}
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")  # its view, in `postgres`
            for name, calls in await conn.fetch(_STATEMENTS, prefix):
                counts.setdefault(name[len(prefix):], {})["statements"] = calls
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
    """The platform's databases' commits, rollbacks and statements per completed saga over the phase, and their
    sum as `platform`. Others sharing the prefix (the payment gateway's stand-in, the raw-limits scratch) are
    shown apart, not summed."""
    out = {}
    for name, counts in sorted(after.items()):
        earlier = before.get(name, {})
        out[name] = {k: round((v - earlier.get(k, 0)) / sagas, 2) for k, v in counts.items()}
    ours = [out[name] for name in platform if name in out]
    if ours:
        out["platform"] = {k: round(sum(d.get(k, 0) for d in ours), 2)
                           for k in ("commits", "rollbacks", "statements") if any(k in d for d in ours)}
    return out
