"""What a fund saga costs the notifications database, counted by PostgreSQL (pg_stat_statements).

A regression guard for issue 10: statements and commits per saga stay under a bound, in a burst and one saga
at a time (the low rate, where every batch holds one message and each fixed cost per pass counts in full).
Each test runs fund sagas end to end, waits until every offer's email is sent and the relay has published
what that caused, and reads the statistics of the notifications database only (reset first). Skipped when
the cluster does not preload pg_stat_statements. Prints the counts per statement kind and the notifications
process's own CPU time per saga (`pytest -s`), which is how README.md's figures were taken.
"""

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import pytest
import pytest_asyncio

from notifications.smtp_sink import MailStore
from tests.support.checks import dsn, query
from tests.support.story import Parties, parties, send_offer

pytestmark = pytest.mark.e2e
SAGAS = 20
IDLE_SECONDS = 3.0
# Measured: about 4 statements of work and 0.2-0.3 COMMITs per saga in a burst (README, issue 10; 19 and 1.05
# before the set-based rewrite). The bounds leave room for batching that varies with timing (a loaded machine
# spreads a burst over many small batches), not for a statement per email or per projection row again.
MAX_STATEMENTS_PER_SAGA = 15
MAX_COMMITS_PER_SAGA = 2
# One saga at a time: nothing to batch, so this is each message's fixed cost: measured 13.2 statements of work
# (14.3 before the event's lookup joined its projection) and 2 COMMITs, the event's and the email's (README, issue
# 10). More sagas give a steadier CPU figure (NOTIFICATIONS_LONE_SAGAS=60 for README's).
ONE_AT_A_TIME_SAGAS = int(os.environ.get("NOTIFICATIONS_LONE_SAGAS") or 15)
MAX_STATEMENTS_PER_LONE_SAGA = 17  # room for the relay marking on its own under load
MAX_COMMITS_PER_LONE_SAGA = 2.5
WARM_UP_SAGAS = 8


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


@dataclass
class Counted:
    statements: float  # of work per saga (idle polls left out)
    commits: float  # COMMIT statements per saga: the services' own transactions that wrote
    per_kind: dict[str, int]


async def _count(platform, sagas: int, run: Callable[[], Awaitable[None]]) -> Counted:
    """Reset the statistics, run the sagas, wait until everything they caused is done, and count."""
    database = f"{platform.prefix}notifications"
    # Nothing of the set-up (accounts registered, their emails) left in flight before counting.
    offers_before = await _all_emails_sent(platform)
    await _relayed(platform)
    await _statistics(platform, "SELECT pg_stat_statements_reset()")
    await _statistics(platform, "SELECT pg_stat_reset()")
    # The idle loops' CPU per second, to count the sagas' own CPU apart from theirs.
    idle_from, idle_started = _cpu_seconds(platform), time.monotonic()
    await asyncio.sleep(IDLE_SECONDS)  # a measuring window, not a wait for a result
    idle_cpu = {name: (seconds - idle_from[name]) / (time.monotonic() - idle_started)
                for name, seconds in _cpu_seconds(platform).items()}
    cpu_before, started = _cpu_seconds(platform), time.monotonic()
    await run()
    own = await _all_emails_sent(platform, expected_at_least=offers_before + sagas, polls=True)
    took = time.monotonic() - started
    cpu = {name: (seconds - cpu_before[name]) * 1000 / sagas for name, seconds in _cpu_seconds(platform).items()}
    net = {name: ms - idle_cpu[name] * took * 1000 / sagas for name, ms in cpu.items()}
    own += await _relayed(platform)  # the relay's last pass (NotificationSent published and marked)
    rows = await _statistics(platform, """
        SELECT query, calls FROM pg_stat_statements JOIN pg_database d ON d.oid = dbid
        WHERE d.datname = $1 AND query NOT ILIKE '%pg_stat%' AND query NOT ILIKE '%FILTER (WHERE status%'
          AND query NOT ILIKE '%outbox WHERE sent_at IS NULL) AS unrelayed%'
        ORDER BY calls DESC""", database)
    per_kind: dict[str, int] = {}
    for row in rows:
        per_kind[kind(row["query"])] = per_kind.get(kind(row["query"]), 0) + row["calls"]
    total = sum(per_kind.values())
    # An idle poll (the delivery loop's or the timer runner's, finding nothing) is BEGIN, one SELECT and
    # ROLLBACK; work ends in COMMIT. Idle polls depend on how long the run took, not on the sagas.
    idle = 3 * per_kind.get("ROLLBACK", 0)
    written = per_kind.get("COMMIT", 0)  # the services' own transactions that wrote (the relay's are autocommit)
    # Less this test's own transactions: its polls and the reads of the statistics (two so far).
    commits, reads = await _committed(platform, database, written + own + 2)
    committed = commits - own - reads - 2
    print(f"\nnotifications, per fund saga ({sagas} sagas): {(total - idle) / sagas:.2f} statements of work "
          f"(+ {idle / sagas:.2f} of idle polls), {written / sagas:.2f} COMMITs, "
          f"{committed / sagas:.2f} transactions committed (autocommit statements included)")
    print(f"  {took:.1f} s; CPU per saga: " + ", ".join(
        f"{n} {ms:.2f} ms ({net[n]:.2f} net of the idle loops)" for n, ms in cpu.items()))
    for name, calls in sorted(per_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {calls / sagas:6.2f}  {name}")
    for row in rows:
        print(f"  {row['calls']:5d}  {' '.join(row['query'].split())[:150]}")
    return Counted((total - idle) / sagas, written / sagas, per_kind)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def warmed_up(client, platform):
    """A few sagas first, one at a time: each connection of the service's pool prepares its statements (and
    asyncpg looks up their array types) once, at its first use; counting that would count a fresh process."""
    for _ in range(WARM_UP_SAGAS):
        person = await parties(client)
        _, outcome = await send_offer(client, person)
        assert outcome.type == "OfferSent"
        await _mailed(MailStore(platform.smtp.directory), person)


async def test_a_fund_saga_costs_notifications_few_statements_and_commits(client, platform, warmed_up):
    if not await _enabled(platform):
        pytest.skip("pg_stat_statements is not preloaded on this PostgreSQL cluster")
    people = [await parties(client) for _ in range(SAGAS)]

    async def burst() -> None:
        outcomes = await asyncio.gather(*(send_offer(client, p) for p in people))
        assert {outcome.type for _, outcome in outcomes} == {"OfferSent"}

    counted = await _count(platform, SAGAS, burst)
    assert counted.statements <= MAX_STATEMENTS_PER_SAGA, counted.per_kind
    assert counted.commits <= MAX_COMMITS_PER_SAGA, counted.per_kind


async def test_one_fund_saga_at_a_time_costs_notifications_few_statements_and_commits(client, platform, warmed_up):
    """The low rate: each saga's mail is in the sink before the next saga starts, so every batch (the event's,
    the delivery loop's, the relay's) holds one message."""
    if not await _enabled(platform):
        pytest.skip("pg_stat_statements is not preloaded on this PostgreSQL cluster")
    people = [await parties(client) for _ in range(ONE_AT_A_TIME_SAGAS)]
    sink = MailStore(platform.smtp.directory)

    async def one_at_a_time() -> None:
        for person in people:
            _, outcome = await send_offer(client, person)
            assert outcome.type == "OfferSent"
            await _mailed(sink, person)

    counted = await _count(platform, ONE_AT_A_TIME_SAGAS, one_at_a_time)
    assert counted.statements <= MAX_STATEMENTS_PER_LONE_SAGA, counted.per_kind
    assert counted.commits <= MAX_COMMITS_PER_LONE_SAGA, counted.per_kind


async def _mailed(sink: MailStore, person: Parties, within: float = 60.0) -> None:
    """Until the freelancer's offer mail is in the sink (read from its files: no query to the database counted)."""
    deadline = time.monotonic() + within
    while True:
        records = await asyncio.to_thread(sink.messages, None, False)
        if any(r["kind"] == "offer_received" and person.freelancer_id in r["notification_id"] + r["to"]
               for r in records):
            return
        assert time.monotonic() < deadline, f"no offer mail for {person.freelancer_id} within {within}s"
        await asyncio.sleep(0.02)


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


async def _relayed(platform, within: float = 60.0) -> int:
    """Waits until the relay published and marked every outbox row; returns the queries it made."""
    deadline = time.monotonic() + within
    made = 0
    while True:
        made += 1
        [row] = await query(platform, "notifications",
                            "SELECT count(*) FILTER (WHERE sent_at IS NULL) AS unrelayed FROM outbox")
        if row["unrelayed"] == 0:
            return made
        assert time.monotonic() < deadline, f"{row['unrelayed']} outbox rows not relayed after {within}s"
        await asyncio.sleep(0.1)


async def _committed(platform, database: str, at_least: int, within: float = 30.0) -> tuple[int, int]:
    """The database's committed transactions once they include `at_least` (backends report theirs when idle,
    within about a second, while pg_stat_statements counts at once), and the reads this made."""
    deadline = time.monotonic() + within
    reads = 0
    while True:
        [row] = await _statistics(platform, "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database)
        reads += 1
        if row["xact_commit"] >= at_least:
            return row["xact_commit"], reads
        assert time.monotonic() < deadline, f"{row['xact_commit']} of at least {at_least} commits reported"
        await asyncio.sleep(0.1)
