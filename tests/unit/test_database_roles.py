"""The pure parts of least privilege in PostgreSQL: role names, the grants, what `migrate` connects with, the
SCRAM verifier's shape (tests/integration/test_database_roles.py logs in with real ones)."""

import base64

import pytest
from billing.settings import GatewayMigrationSettings
from platform_runtime.database_roles import DatabaseRoles, _in_database, grant_statements, scram_verifier
from platform_runtime.settings import MigrationSettings

pytestmark = pytest.mark.unit


def test_each_database_has_an_owner_and_an_app_role_named_after_it():
    roles = DatabaseRoles("t_contracts")
    assert (roles.owner, roles.app) == ("t_contracts_owner", "t_contracts_app")


@pytest.mark.parametrize("name", ["Contracts", "contracts; DROP ROLE x", 'a"b', "", "x" * 60])
def test_a_database_name_that_is_no_plain_identifier_is_refused(name):
    with pytest.raises(ValueError):
        DatabaseRoles(name)


def test_the_app_role_gets_dml_and_connect_only_and_the_public_nothing():
    statements = grant_statements(DatabaseRoles("escrow"))
    granted = [s for s in statements if s.startswith(("GRANT", "ALTER DEFAULT"))]
    assert all('TO "escrow_app"' in s for s in granted)
    assert not any(word in s for s in granted for word in ("CREATE", "TRUNCATE", "TEMP", "ALL PRIVILEGES", "OPTION"))
    assert 'REVOKE ALL ON DATABASE "escrow" FROM PUBLIC' in statements
    assert "REVOKE CREATE ON SCHEMA public FROM PUBLIC" in statements


def test_the_scram_verifier_has_postgresqls_shape_and_a_fresh_salt_each_time():
    verifier = scram_verifier("secret")
    scheme, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored, server = keys.split(":")
    assert scheme == "SCRAM-SHA-256" and iterations == "4096"
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(stored)) == len(base64.b64decode(server)) == 32
    assert scram_verifier("secret") != verifier
    assert scram_verifier("secret", salt=b"s" * 16) == scram_verifier("secret", salt=b"s" * 16)


@pytest.mark.parametrize(("dsn", "expected"), [
    ("postgresql://postgres:pw@127.0.0.1:5432", "postgresql://postgres:pw@127.0.0.1:5432/billing"),
    ("postgresql://postgres:pw@127.0.0.1:5432/postgres", "postgresql://postgres:pw@127.0.0.1:5432/billing"),
    ("postgresql://postgres@/postgres?host=/var/tmp/pg&port=15432",
     "postgresql://postgres@/billing?host=/var/tmp/pg&port=15432"),
])
def test_the_admin_dsn_is_pointed_at_another_database_keeping_its_socket(dsn, expected):
    assert _in_database(dsn, "billing") == expected


def test_migrate_connects_as_the_owner_and_falls_back_to_the_service_url(monkeypatch):
    monkeypatch.delenv("MIGRATION_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://contracts_app:a@h/contracts")
    assert MigrationSettings().url.startswith("postgresql+asyncpg://contracts_app:")
    monkeypatch.setenv("MIGRATION_DATABASE_URL", "postgresql+asyncpg://contracts_owner:o@h/contracts")
    assert MigrationSettings().url.startswith("postgresql+asyncpg://contracts_owner:")
    monkeypatch.delenv("MIGRATION_DATABASE_URL")
    monkeypatch.delenv("DATABASE_URL")
    with pytest.raises(ValueError, match="MIGRATION_DATABASE_URL"):
        MigrationSettings().url  # noqa: B018


def test_billing_migrates_the_gateway_database_as_its_owner(monkeypatch):
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "postgresql+asyncpg://gateway_app:a@h/gateway")
    monkeypatch.setenv("GATEWAY_MIGRATION_DATABASE_URL", "postgresql+asyncpg://gateway_owner:o@h/gateway")
    assert GatewayMigrationSettings().url.startswith("postgresql+asyncpg://gateway_owner:")
