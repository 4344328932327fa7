"""The running platform's side of least privilege: the migrations ran as each database's owner role, and every
session the services hold is their DML-only runtime role (tests/integration/test_database_roles.py shows what
those roles can and cannot do). So every other end-to-end test is a test of the services working with DML only."""

import asyncpg
import pytest

from tests.support.processes import DATABASES

pytestmark = pytest.mark.e2e


async def test_the_services_sessions_are_their_runtime_roles_and_their_tables_the_owners(platform):
    admin = platform.postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1).rstrip("/")
    names = {platform.roles(d).name: platform.roles(d) for d in DATABASES}
    conn = await asyncpg.connect(f"{admin}/postgres")
    try:
        sessions = await conn.fetch("SELECT datname, usename FROM pg_stat_activity WHERE datname = ANY($1::text[])",
                                    list(names))
    finally:
        await conn.close()
    by_database = {}
    for row in sessions:
        by_database.setdefault(row["datname"], set()).add(row["usename"])
    assert {platform.roles(s).name for s in ("contracts", "escrow", "billing", "notifications")} <= set(by_database)
    assert all(users == {names[db].app} for db, users in by_database.items()), by_database
    for name, roles in names.items():
        conn = await asyncpg.connect(f"{admin}/{name}")
        try:
            owners = {r["tableowner"] for r in await conn.fetch(
                "SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        finally:
            await conn.close()
        assert owners == {roles.owner}, (name, owners)
