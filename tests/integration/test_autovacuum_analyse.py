"""Autovacuum analyses a service's tables only after many changes, and its outbox never (runtime_migrations).

By default PostgreSQL analyses a table once 50 rows + a tenth of it have changed: the small tables of a young
database were analysed at nearly every autovacuum round, and each ANALYZE made every connection plan the table's
statements again (issue 10, twenty-fourth step). Checked on each service's database as its migrations leave it
(a revision that creates a table after `analyse_after_many_changes` ran must call it again, or this fails), and on
the real server: a table under the threshold is left alone while a default one beside it is analysed.
"""

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from billing.bootstrap import definition as billing
from contracts.bootstrap import definition as contracts
from escrow.bootstrap import definition as escrow
from notifications.bootstrap import definition as notifications
from platform_runtime.migrate import alembic_config
from platform_runtime.relay import asyncpg_dsn
from platform_runtime.runtime_migrations import ANALYSE_AFTER_CHANGES, NEVER, QUEUES

from tests.support.probe_service import drop_database, migrated_engine, scratch_database
from tests.support.processes import DB_PREFIX

pytestmark = pytest.mark.integration

SERVICES = {"contracts": contracts, "billing": billing, "escrow": escrow, "notifications": notifications}
# Autovacuum looks at a database every naptime: 5 s on the project's servers, 1 min by default on others.
AUTOVACUUM_DEADLINE = 150  # s


async def _thresholds(url: str) -> dict[str, str | None]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT relname, reloptions FROM pg_class WHERE relkind IN ('r', 'p')"
            " AND relnamespace = 'public'::regnamespace AND relname <> 'alembic_version'")
    finally:
        await conn.close()
    options = {row["relname"]: dict(o.split("=", 1) for o in row["reloptions"] or []) for row in rows}
    return {table: found.get("autovacuum_analyze_threshold") for table, found in options.items()}


@pytest.mark.parametrize("service", SERVICES)
async def test_every_table_is_analysed_after_many_changes_and_the_outbox_never(infra, service):
    async with migrated_engine(infra.postgres_url, f"analyse_{service}", SERVICES[service].migrations_dir) as engine:
        url = engine.url.render_as_string(hide_password=False)
        thresholds = await _thresholds(url)
        assert {"outbox", "processed_messages", "timers"} <= thresholds.keys()
        assert thresholds == {table: str(NEVER if table in QUEUES else ANALYSE_AFTER_CHANGES) for table in thresholds}

        # And a downgrade to before it (through any revision after it) gives the tables back to PostgreSQL's defaults.
        config = alembic_config(SERVICES[service].migrations_dir, url)
        await asyncio.to_thread(command.downgrade, config, _before_the_thresholds(config))
        assert set((await _thresholds(url)).values()) == {None}


def _before_the_thresholds(config) -> str:
    """The revision before the one that set the thresholds: later revisions may follow it (billing's does)."""
    setting = [r for r in ScriptDirectory.from_config(config).walk_revisions()
               if "analyse_after_many_changes()" in Path(r.path).read_text()]
    assert len(setting) == 1, [r.revision for r in setting]
    return setting[0].down_revision


async def test_the_server_leaves_a_table_under_its_threshold_unanalysed_while_it_analyses_a_default_one(infra):
    name = f"{DB_PREFIX}it_analyse_threshold_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(infra.postgres_url, name)
    try:
        await _analysed_under_the_threshold_and_by_default(url)
    finally:
        await drop_database(infra.postgres_url, name)


async def _analysed_under_the_threshold_and_by_default(url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("CREATE TABLE as_postgres_does (n int)")
        await conn.execute(f"CREATE TABLE after_many_changes (n int) WITH (autovacuum_analyze_threshold = "
                           f"{ANALYSE_AFTER_CHANGES})")
        async with conn.transaction():  # both tables' changes reach the statistics together
            for table in ("as_postgres_does", "after_many_changes"):
                await conn.execute(f"INSERT INTO {table} SELECT generate_series(1, $1)", ANALYSE_AFTER_CHANGES // 2)
    finally:
        await conn.close()  # a backend's counts are flushed when it ends

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        deadline = time.monotonic() + AUTOVACUUM_DEADLINE
        while True:
            analysed = {row["relname"]: row["autoanalyze_count"] for row in await conn.fetch(
                "SELECT relname, autoanalyze_count FROM pg_stat_user_tables")}
            if analysed["as_postgres_does"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert analysed == {"as_postgres_does": 1, "after_many_changes": 0}
    finally:
        await conn.close()
