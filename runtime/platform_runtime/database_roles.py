"""Least privilege in PostgreSQL: each database has an owner role and a runtime role with DML only.

    <db>_owner  owns the database and every object in its `public` schema; the service's `migrate` runs as it.
                LOGIN, but no SUPERUSER, CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS.
    <db>_app    what the service runs as (DATABASE_URL): CONNECT to its own database, USAGE on `public`,
                SELECT/INSERT/UPDATE/DELETE on the tables and USAGE/SELECT on the sequences the owner makes
                (ALTER DEFAULT PRIVILEGES), nothing else: no CREATE, no TEMP, no TRUNCATE, no DDL.
Nobody else connects: CONNECT and TEMP are revoked from PUBLIC on the database, so another service's roles
cannot even open a session there.

`provision` makes it so, idempotently, as a superuser: on a new cluster, and on one where the databases and
their tables were made by the superuser before (their objects are handed to the owner). The local scripts
(deploy/local/postgres.sh), compose and the test harness run it; on Kubernetes CloudNativePG creates the roles
and `grant_statements` are the cluster's post-init SQL (deploy/k8s/generate.py).

    python -m platform_runtime.database_roles DATABASE...
reads the superuser's URL from DATABASE_ROLES_ADMIN_URL and each role's password from <ROLE>_PASSWORD
(CONTRACTS_OWNER_PASSWORD, CONTRACTS_APP_PASSWORD, ...; POSTGRES_PASSWORD sets the superuser's own when
given). Passwords are sent as SCRAM-SHA-256 verifiers, so the server never sees, or logs, one in clear.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import sys
from dataclasses import dataclass

import asyncpg

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,50}$")
_SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)


@dataclass(frozen=True)
class DatabaseRoles:
    """The database `name` and its two login roles."""

    name: str

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.name):  # every name below is put into SQL as an identifier
            raise ValueError(f"database name {self.name!r}: lower-case letters, digits and _ only")

    @property
    def owner(self) -> str:
        return f"{self.name}_owner"

    @property
    def app(self) -> str:
        return f"{self.name}_app"


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677, as libpq's
    PQencryptPasswordConn makes it): what ALTER ROLE ... PASSWORD takes instead of the clear text."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def grant_statements(roles: DatabaseRoles) -> list[str]:
    """Run inside the database by a superuser: who may connect, and what the runtime role may do there."""
    db, owner, app = roles.name, roles.owner, roles.app
    return [
        f'REVOKE ALL ON DATABASE "{db}" FROM PUBLIC',
        f'GRANT CONNECT ON DATABASE "{db}" TO "{app}"',
        # PostgreSQL 15+ gives PUBLIC no CREATE on `public` already; a database made from an older template may
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f'GRANT USAGE ON SCHEMA public TO "{app}"',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA public '
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{app}"',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO "{app}"',
        # what exists already (default privileges cover only what the owner creates from now on)
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{app}"',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{app}"',
    ]


# Objects of `public` someone else owns (a superuser's earlier migrations): each becomes the owner's. A table's
# own sequences (serial, identity) and row type follow it, so they are left out here.
_NOT_OWNED = """
SELECT format('ALTER %s %I.%I OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                             WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, n.nspname, c.relname, $1::text)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relowner <> $1::regrole
  AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                       AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
ORDER BY c.relkind = 'S'
"""
_NOT_OWNED_ROUTINES = """
SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, $1::text)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND p.proowner <> $1::regrole
"""
_NOT_OWNED_TYPES = """
SELECT format('ALTER TYPE %s OWNER TO %I', t.oid::regtype, $1::text)
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = 'public' AND t.typowner <> $1::regrole AND t.typrelid = 0 AND t.typelem = 0
"""


async def _ensure_role(conn: asyncpg.Connection, role: str, password: str | None) -> None:
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        try:
            await conn.execute(f'CREATE ROLE "{role}"')
        except asyncpg.DuplicateObjectError:  # made by a concurrent run meanwhile
            pass
    # Every start: whatever the role was given by hand, it is back to a plain login.
    await conn.execute(f'ALTER ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS '
                       "INHERIT CONNECTION LIMIT -1")
    if password is not None:
        await set_password(conn, role, password)


async def set_password(conn: asyncpg.Connection, role: str, password: str) -> None:
    await conn.execute(f'ALTER ROLE "{role}" PASSWORD {_literal(scram_verifier(password))}')


def _in_database(admin_dsn: str, database: str) -> str:
    """The admin DSN pointed at another database (its query string, e.g. a socket `host=`, kept)."""
    head, sep, query = admin_dsn.partition("?")
    scheme, _, rest = head.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{database}{sep}{query}"


async def provision(admin_dsn: str, roles: DatabaseRoles, owner_password: str | None,
                    app_password: str | None) -> None:
    """The roles, the database (owned by the owner role), ownership of what it holds, and the grants.
    admin_dsn: a superuser's asyncpg DSN (any database); a password None leaves the role's as it is."""
    conn = await asyncpg.connect(_in_database(admin_dsn, "postgres"))
    try:
        await _ensure_role(conn, roles.owner, owner_password)
        await _ensure_role(conn, roles.app, app_password)
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", roles.name):
            try:
                await conn.execute(f'CREATE DATABASE "{roles.name}" OWNER "{roles.owner}"')
            except asyncpg.DuplicateDatabaseError:
                pass
        await conn.execute(f'ALTER DATABASE "{roles.name}" OWNER TO "{roles.owner}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(_in_database(admin_dsn, roles.name))
    try:
        async with conn.transaction():
            for query in (_NOT_OWNED, _NOT_OWNED_ROUTINES, _NOT_OWNED_TYPES):
                for (statement,) in await conn.fetch(query, roles.owner):
                    await conn.execute(statement)
            for statement in grant_statements(roles):
                await conn.execute(statement)
    finally:
        await conn.close()


async def drop(admin_dsn: str, roles: DatabaseRoles) -> None:
    """The database (sessions in it ended) and its roles, if they exist: the test harness's clean slate."""
    conn = await asyncpg.connect(_in_database(admin_dsn, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{roles.name}" WITH (FORCE)')
        for role in (roles.app, roles.owner):
            if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                # default privileges and grants the role holds live in other databases only if someone put them
                # there by hand; the database that held ours is gone
                await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await conn.close()


async def _main(databases: list[str]) -> None:
    admin = os.environ["DATABASE_ROLES_ADMIN_URL"].replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(_in_database(admin, "postgres"))
    try:
        if os.environ.get("POSTGRES_PASSWORD"):
            await set_password(conn, "postgres", os.environ["POSTGRES_PASSWORD"])
        # The maintenance database holds nothing of the platform's: no service role needs a session there.
        await conn.execute("REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC")
    finally:
        await conn.close()
    for database in databases:
        roles = DatabaseRoles(database)
        password = lambda role: os.environ.get(f"{role.upper()}_PASSWORD")  # noqa: E731
        await provision(admin, roles, password(roles.owner), password(roles.app))
        print(f"database {database}: owner {roles.owner}, runtime role {roles.app} (DML only)")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    asyncio.run(_main(sys.argv[1:]))
