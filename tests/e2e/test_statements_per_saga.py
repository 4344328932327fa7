"""Statements and transactions per fund saga in billing's and escrow's databases, counted by PostgreSQL itself
(pg_stat_statements, BEGIN/COMMIT/SAVEPOINT included where the server tracks utility statements): round trips
are what a saga costs there, so this guards against them creeping back.

A burst of fund sagas on the test platform; the counters are reset after the parties are set up and read once
every saga has its outcome and billing's and escrow's outboxes are drained. The idle loops (timers, the gateway
loop's poll) run meanwhile, as often as the machine lets them: the statement kinds they run in an idle window just
before are counted apart as polling, and the bounds hold the saga's own work: every other kind, plus a BEGIN per
COMMIT (an idle poll ends in ROLLBACK). The figures by statement kind go to the test log directory
(statements-per-saga.txt). Skipped on a server without pg_stat_statements loaded.
"""

import asyncio
import re
import time
from collections import Counter

import asyncpg
import pytest

from tests.support.checks import dsn
from tests.support.processes import LOGS
from tests.support.story import offer, parties

pytestmark = pytest.mark.e2e

SAGAS = 30
# Upper bounds per fund saga of the saga's own statements and commits (measured figures are in the README). A
# saga step re-sent after its deadline (a loaded machine) counts again, so they leave room above the figures.
BOUNDS = {"billing": {"statements": 9, "commits": 2}, "escrow": {"statements": 9, "commits": 2}}
IDLE_SECONDS = 3.0
_PROBE = "SELECT count(*) FROM outbox WHERE sent_at IS NULL /* statements-per-saga probe */"
_STATEMENTS = ("SELECT s.query, s.calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
               "WHERE d.datname = $1 AND s.query NOT LIKE '%statements-per-saga probe%' "
               "AND s.query NOT LIKE '%pg_stat%'")


async def _superuser(platform, database: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn(platform.database_url(database)))


async def _loaded(conn: asyncpg.Connection) -> bool:
    if not await conn.fetchval("SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'"):
        return False
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return True


async def _statements(conn: asyncpg.Connection, database: str) -> Counter:
    """Calls by statement kind (numbered savepoints as one kind) since the last reset."""
    counts: Counter = Counter()
    for row in await conn.fetch(_STATEMENTS, database):
        counts[re.sub(r"sa_savepoint_\d+", "sa_savepoint_N", " ".join(row["query"].split()))] += row["calls"]
    return counts


async def _drained(conns: dict[str, asyncpg.Connection], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for name, conn in conns.items():
        while await conn.fetchval(_PROBE):
            assert time.monotonic() < deadline, f"{name}'s outbox never drained"
            await asyncio.sleep(0.2)


async def test_a_fund_saga_costs_billing_and_escrow_a_bounded_number_of_statements(client, platform):
    names = {service: f"{platform.prefix}{service}" for service in BOUNDS}
    conns = {service: await _superuser(platform, service) for service in BOUNDS}
    try:
        if not await _loaded(conns["billing"]):
            pytest.skip("pg_stat_statements is not loaded on this PostgreSQL")
        for conn in conns.values():
            await _loaded(conn)
        people = [await parties(client) for _ in range(4)]
        offers = [offer(people[i % len(people)]) for i in range(SAGAS)]
        await _drained(conns)
        reset = conns["billing"]
        await reset.execute("SELECT pg_stat_statements_reset()")
        await asyncio.sleep(IDLE_SECONDS)  # a measurement window: what the idle loops cost per second
        idle = {s: await _statements(conns[s], names[s]) for s in BOUNDS}

        await reset.execute("SELECT pg_stat_statements_reset()")
        started = time.monotonic()
        commands = await asyncio.gather(*(client.send(o, subject=o.contract_id, actor=o.client_id) for o in offers))
        outcomes = await asyncio.gather(*(client.outcome(c, {"OfferSent", "OfferFundingFailed"}, timeout=120)
                                          for c in commands))
        assert {o.type for o in outcomes} == {"OfferSent"}, [o.data for o in outcomes if o.type != "OfferSent"]
        await _drained(conns)
        seconds = time.monotonic() - started

        report, figures = [f"{SAGAS} fund sagas in {seconds:.1f} s: statements per saga by kind "
                           f"[and per second when idle]"], {}
        for service, conn in conns.items():
            burst = await _statements(conn, names[service])
            polled = {q for q in idle[service] if q != "COMMIT"}
            commits = burst["COMMIT"]
            work = sum(c for q, c in burst.items() if q not in polled) + commits  # + a BEGIN per COMMIT
            figures[service] = {"statements": work / SAGAS, "commits": commits / SAGAS}
            report.append(f"{service}: {work / SAGAS:.2f} statements of its own work and {commits / SAGAS:.2f} "
                          f"commits per fund saga; polling meanwhile "
                          f"{sum(c for q, c in burst.items() if q in polled) / SAGAS:.2f} per saga "
                          f"({sum(idle[service].values()) / IDLE_SECONDS:.1f} statements/s when idle)")
            for query, calls in burst.most_common():
                tag = f"[{idle[service][query] / IDLE_SECONDS:5.1f}]" if query in polled else " " * 7
                report.append(f"  {calls / SAGAS:6.2f} {tag}  {query[:140]}")
        text = "\n".join(report)
        print(text)
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / "statements-per-saga.txt").write_text(text + "\n")
        for service, bounds in BOUNDS.items():
            for kind, bound in bounds.items():
                assert figures[service][kind] <= bound, f"{service}: {figures[service][kind]:.2f} {kind} per " \
                                                        f"saga (at most {bound})\n{text}"
    finally:
        for conn in conns.values():
            await conn.close()
