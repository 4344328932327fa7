"""Least privilege on the real PostgreSQL server (platform_runtime.database_roles): two services' databases, each
with its owner and its DML-only runtime role, as postgres.sh, the test harness and Kubernetes make them.
A service's runtime role reads and writes its own tables and nothing else: it cannot change its schema, cannot
open a session in another service's database, let alone read its tables; the owner is no superuser either."""

import uuid

import asyncpg
import pytest
import pytest_asyncio
from platform_runtime.database_roles import DatabaseRoles, drop, provision

from tests.support.processes import DB_PREFIX

pytestmark = pytest.mark.integration

DENIED = asyncpg.InsufficientPrivilegeError  # SQLSTATE 42501, "permission denied" / "must be owner"


class Cluster:
    """Two services' databases on the test server, and sessions as any of their roles."""

    def __init__(self, postgres_url: str) -> None:
        self.admin = postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1).rstrip("/")
        tag = uuid.uuid4().hex[:8]
        self.contracts = DatabaseRoles(f"{DB_PREFIX}roles_{tag}_contracts")
        self.escrow = DatabaseRoles(f"{DB_PREFIX}roles_{tag}_escrow")
        self.passwords: dict[str, str] = {}

    async def provision(self) -> None:
        for roles in (self.contracts, self.escrow):
            for role in (roles.owner, roles.app):
                self.passwords.setdefault(role, uuid.uuid4().hex)
            await provision(self.admin, roles, self.passwords[roles.owner], self.passwords[roles.app])

    async def connect(self, role: str, database: DatabaseRoles, password: str | None = None) -> asyncpg.Connection:
        host_port = self.admin.rsplit("@", 1)[1]
        return await asyncpg.connect(f"postgresql://{host_port}/{database.name}", user=role,
                                     password=password or self.passwords[role])

    async def superuser(self, database: DatabaseRoles) -> asyncpg.Connection:
        return await asyncpg.connect(f"{self.admin}/{database.name}")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cluster(infra):
    cluster = Cluster(infra.postgres_url)
    await cluster.provision()
    # Each owner makes its service's tables, as `migrate` does: with an identity column (a sequence), like
    # notifications' tables.
    for roles, table in ((cluster.contracts, "contracts"), (cluster.escrow, "ledger")):
        conn = await cluster.connect(roles.owner, roles)
        try:
            await conn.execute(f"CREATE TABLE {table} (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                               "amount bigint NOT NULL)")
            await conn.execute(f"INSERT INTO {table} (amount) VALUES (50000)")
        finally:
            await conn.close()
    yield cluster
    for roles in (cluster.contracts, cluster.escrow):
        await drop(cluster.admin, roles)


async def test_neither_role_is_a_superuser_or_may_make_roles_or_databases(cluster):
    conn = await cluster.superuser(cluster.contracts)
    try:
        rows = await conn.fetch("SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
                                "rolcanlogin FROM pg_roles WHERE rolname = ANY($1::text[])",
                                [cluster.contracts.owner, cluster.contracts.app])
    finally:
        await conn.close()
    assert {r["rolname"] for r in rows} == {cluster.contracts.owner, cluster.contracts.app}
    for row in rows:
        assert row["rolcanlogin"] and not any(row[k] for k in ("rolsuper", "rolcreatedb", "rolcreaterole",
                                                               "rolreplication", "rolbypassrls")), dict(row)
    owner = await cluster.connect(cluster.contracts.owner, cluster.contracts)
    try:
        with pytest.raises(DENIED):
            await owner.execute("CREATE DATABASE not_allowed")
        with pytest.raises(DENIED):
            await owner.execute("CREATE ROLE not_allowed")
    finally:
        await owner.close()


async def test_the_runtime_role_reads_and_writes_its_own_tables(cluster):
    conn = await cluster.connect(cluster.contracts.app, cluster.contracts)
    try:
        async with conn.transaction():
            seq = await conn.fetchval("INSERT INTO contracts (amount) VALUES (700) RETURNING seq")  # its sequence too
            await conn.execute("UPDATE contracts SET amount = 800 WHERE seq = $1", seq)
            assert await conn.fetchval("SELECT amount FROM contracts WHERE seq = $1 FOR UPDATE", seq) == 800
            await conn.execute("DELETE FROM contracts WHERE seq = $1", seq)
        assert await conn.fetchval("SELECT sum(amount) FROM contracts") == 50000
    finally:
        await conn.close()


@pytest.mark.parametrize("statement", [
    "CREATE TABLE sneaky (id int)",
    "CREATE TEMPORARY TABLE sneaky (id int)",
    "CREATE SCHEMA sneaky",
    "CREATE FUNCTION public.sneaky() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "DROP TABLE contracts",
    "ALTER TABLE contracts ADD COLUMN sneaky int",
    "CREATE INDEX sneaky ON contracts (amount)",
    "TRUNCATE contracts",
    "CREATE VIEW sneaky AS SELECT amount FROM contracts",
    "COMMENT ON TABLE contracts IS 'mine now'",
])
async def test_the_runtime_role_cannot_change_its_schema(cluster, statement):
    conn = await cluster.connect(cluster.contracts.app, cluster.contracts)
    try:
        with pytest.raises(DENIED):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_a_services_roles_cannot_open_a_session_in_another_services_database(cluster):
    for role in (cluster.contracts.app, cluster.contracts.owner):
        with pytest.raises(DENIED, match="permission denied for database"):
            await cluster.connect(role, cluster.escrow, password=cluster.passwords[role])


async def test_a_services_runtime_role_has_no_right_on_another_services_tables(cluster):
    """Even a session there would not help: the other database grants it nothing (checked as the superuser)."""
    conn = await cluster.superuser(cluster.escrow)
    try:
        rights = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, "
            "unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p(privilege) "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND has_table_privilege($1, c.oid, p.privilege)",
            cluster.contracts.app)
        tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert await conn.fetchval("SELECT has_database_privilege($1, current_database(), 'CONNECT')",
                                   cluster.contracts.app) is False
        # and its own runtime role has exactly DML on the table
        own = await conn.fetchval(
            "SELECT array_agg(p.privilege ORDER BY p.privilege) FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', "
            "'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(privilege) "
            "WHERE has_table_privilege($1, 'ledger', p.privilege)", cluster.escrow.app)
    finally:
        await conn.close()
    assert tables == 1 and rights == 0
    assert own == ["DELETE", "INSERT", "SELECT", "UPDATE"]


async def test_a_tcp_login_needs_the_roles_password(cluster):
    with pytest.raises(asyncpg.InvalidPasswordError):
        await cluster.connect(cluster.contracts.app, cluster.contracts, password="not-the-password")


async def test_provisioning_again_changes_nothing_and_keeps_the_grants(cluster):
    await cluster.provision()  # every start of postgres.sh does it
    conn = await cluster.connect(cluster.escrow.app, cluster.escrow)
    try:
        assert await conn.fetchval("SELECT sum(amount) FROM ledger") == 50000
        with pytest.raises(DENIED):
            await conn.execute("DROP TABLE ledger")
    finally:
        await conn.close()
