"""What a fund saga costs the notifications database, counted by PostgreSQL (pg_stat_statements).

A regression guard for issue 10: statements and commits per saga stay under a bound. Runs a small burst
of fund sagas end to end, waits until every offer's email is sent, and reads the statistics of the
notifications database only (reset first). Skipped when the cluster does not preload pg_stat_statements.
Prints the counts per statement kind (`pytest -s`), which is how README.md's figures were taken.
"""

import asyncio
import os
import re
import time

import asyncpg
import pytest

from tests.support.checks import dsn, query
from tests.support.story import parties, send_offer

pytestmark = pytest.mark.e2e
SAGAS = 20
IDLE_SECONDS = 3.0
# Measured after the set-based rewrite: about 5.6 statements of work and 0.1-0.2 COMMITs per saga (README, issue
# 10; 19 and 1.05 before). The bounds leave room for batching that varies with timing (and the pool's new
# connections, each introspecting types once), not for a statement per email or per projection row again.
MAX_STATEMENTS_PER_SAGA = 15
MAX_COMMITS_PER_SAGA = 2


async def _statistics(platform, sql: str, *args) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn(platform.database_url("notifications")))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _enabled(platform) -> bool:
    rows = await _statistics(platform, "SELECT current_setting('shared_preload_libraries') AS preload")
    if "pg_stat_statements" not in rows[0]["preload"]:
        return False
    await _statistics(platform, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return True


def kind(statement: str) -> str:
    """A short name for a statement: its verb and first table (or function)."""
    text = " ".join(statement.split())
    verb = text.split(" ", 1)[0].upper()
    table = re.search(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+([a-z_]+)", text, re.IGNORECASE)
    if text.upper().startswith("WITH"):
        verb = "WITH " + (re.search(r"\b(INSERT|UPDATE|SELECT)\b", text[4:], re.IGNORECASE) or [""])[0].upper()
    function = re.search(r"\b(pg_notify|pg_advisory_lock)\b", text)
    return f"{verb} {table.group(1) if table else (function.group(1) if function else '')}".strip()


async def test_a_fund_saga_costs_notifications_few_statements_and_commits(client, platform):
    if not await _enabled(platform):
        pytest.skip("pg_stat_statements is not preloaded on this PostgreSQL cluster")
    people = [await parties(client) for _ in range(SAGAS)]
    database = f"{platform.prefix}notifications"
    # Nothing of the set-up (accounts registered, their emails) left in flight before counting.
    offers_before = await _all_emails_sent(platform)
    await _statistics(platform, "SELECT pg_stat_statements_reset()")
    await _statistics(platform, "SELECT pg_stat_reset()")
    # The idle loops' CPU per second, to count the burst's own CPU apart from theirs.
    idle_from, idle_started = _cpu_seconds(platform), time.monotonic()
    await asyncio.sleep(IDLE_SECONDS)
    idle_cpu = {name: (seconds - idle_from[name]) / (time.monotonic() - idle_started)
                for name, seconds in _cpu_seconds(platform).items()}
    cpu_before, started = _cpu_seconds(platform), time.monotonic()
    outcomes = await asyncio.gather(*(send_offer(client, p) for p in people))
    assert {outcome.type for _, outcome in outcomes} == {"OfferSent"}
    own = await _all_emails_sent(platform, expected_at_least=offers_before + SAGAS, polls=True)
    took = time.monotonic() - started
    cpu = {name: (seconds - cpu_before[name]) * 1000 / SAGAS for name, seconds in _cpu_seconds(platform).items()}
    net = {name: ms - idle_cpu[name] * took * 1000 / SAGAS for name, ms in cpu.items()}
    await asyncio.sleep(2.0)  # the relay's last pass; idle backends report their counts within a second
    rows = await _statistics(platform, """
        SELECT query, calls FROM pg_stat_statements JOIN pg_database d ON d.oid = dbid
        WHERE d.datname = $1 AND query NOT ILIKE '%pg_stat%' AND query NOT ILIKE '%FILTER (WHERE status%'
        ORDER BY calls DESC""", database)
    # Less this test's own transactions: its polls and the reads of the statistics.
    [commits] = await _statistics(platform, "SELECT xact_commit - $2 AS n FROM pg_stat_database WHERE datname = $1",
                                  database, own + 2)
    per_kind: dict[str, int] = {}
    for row in rows:
        per_kind[kind(row["query"])] = per_kind.get(kind(row["query"]), 0) + row["calls"]
    total = sum(per_kind.values())
    # An idle poll (the delivery loop's or the timer runner's, finding nothing) is BEGIN, one SELECT and
    # ROLLBACK; work ends in COMMIT. Idle polls depend on how long the burst took, not on the sagas.
    idle = 3 * per_kind.get("ROLLBACK", 0)
    written = per_kind.get("COMMIT", 0)  # the services' own transactions that wrote (the relay's are autocommit)
    print(f"\nnotifications, per fund saga ({SAGAS} sagas): {(total - idle) / SAGAS:.2f} statements of work "
          f"(+ {idle / SAGAS:.2f} of idle polls), {written / SAGAS:.2f} COMMITs, "
          f"{commits['n'] / SAGAS:.2f} transactions committed (autocommit statements included)")
    print(f"  burst of {took:.1f} s; CPU per saga: " + ", ".join(
        f"{n} {ms:.1f} ms ({net[n]:.1f} net of the idle loops)" for n, ms in cpu.items()))
    for name, calls in sorted(per_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {calls / SAGAS:6.2f}  {name}")
    for row in rows:
        print(f"  {row['calls']:5d}  {' '.join(row['query'].split())[:150]}")
    assert (total - idle) / SAGAS <= MAX_STATEMENTS_PER_SAGA, per_kind
    assert written / SAGAS <= MAX_COMMITS_PER_SAGA


def _cpu_seconds(platform) -> dict[str, float]:
    """User + system CPU so far of the notifications processes and the SMTP sink (/proc, Linux only)."""
    pids = {name: proc.pid for name, proc in platform.procs.items() if name.startswith("notifications")}
    if getattr(platform, "smtp", None) and platform.smtp.proc:
        pids["smtp sink"] = platform.smtp.proc.pid
    spent = {}
    for name, pid in pids.items():
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        spent[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return spent


async def _all_emails_sent(platform, expected_at_least: int = 0, within: float = 120.0, polls: bool = False) -> int:
    """Waits until no email is pending and at least so many offers were mailed; returns the offers mailed,
    or with `polls` the number of queries it made (each a transaction in the database counted)."""
    deadline = time.monotonic() + within
    made = 0
    while True:
        made += 1
        [row] = await query(platform, "notifications", """
            SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
                   count(*) FILTER (WHERE status = 'sent' AND kind = 'offer_received') AS offers
            FROM notifications WHERE channel = 'email'""")
        if row["pending"] == 0 and row["offers"] >= expected_at_least:
            return made if polls else row["offers"]
        assert time.monotonic() < deadline, f"emails still pending after {within}s: {dict(row)}"
        await asyncio.sleep(0.2)
