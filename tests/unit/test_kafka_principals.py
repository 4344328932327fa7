"""The ACL table's shape (each row as the README's security section says) and what a local client is handed by
deploy/local/credentials.sh; the broker's enforcement of the table is tests/integration/test_kafka_acls.py."""

import os
import stat
import subprocess
from pathlib import Path

import pytest
from platform_runtime.credentials import LOCAL_SCRIPT, Credentials
from platform_schemas.acls import (
    ADMIN_COMMAND_TOPICS,
    EVENT_TOPICS,
    PRINCIPALS,
    PUBLIC_COMMAND_TOPICS,
    SERVICES,
    SUPER_USER,
    acls,
    may,
)
from platform_schemas.topics import TOPICS, dlq

pytestmark = pytest.mark.unit
SAGA_COMMAND_TOPICS = {"billing.saga-commands", "escrow.saga-commands"}


def test_clients_write_only_command_topics_and_read_only_facts_and_dead_letters():
    assert set(PRINCIPALS["integrator"].writes) == set(PUBLIC_COMMAND_TOPICS)
    assert set(PRINCIPALS["integrator"].reads) == set(EVENT_TOPICS)
    assert set(PRINCIPALS["analytics"].reads) == set(EVENT_TOPICS) and PRINCIPALS["analytics"].writes == ()
    assert set(PRINCIPALS["admin"].writes) == set(ADMIN_COMMAND_TOPICS) | set(PUBLIC_COMMAND_TOPICS)
    assert set(PRINCIPALS["admin"].reads) == set(EVENT_TOPICS) | {dlq(t) for t in (t.name for t in TOPICS)
                                                                  if not t.endswith(".dlq")}
    for name in ("integrator", "admin", "analytics"):
        row = PRINCIPALS[name]
        assert row.group_prefixed and row.group == f"{name}-"
        assert not set(row.writes) & (set(EVENT_TOPICS) | SAGA_COMMAND_TOPICS)  # no forged facts, no ledger orders


def test_a_service_writes_its_own_facts_and_the_dead_letters_of_what_it_reads():
    writers_of = {t: {p.name for p in PRINCIPALS.values() if t in p.writes} for t in EVENT_TOPICS}
    assert writers_of == {f"{s}.events": {s} for s in SERVICES}
    for service in SERVICES:
        row = PRINCIPALS[service]
        assert {dlq(t) for t in row.reads} <= set(row.writes) and row.group == service and not row.group_prefixed
    assert {p.name for p in PRINCIPALS.values() if "escrow.saga-commands" in p.writes} == {"contracts", "billing"}
    assert SUPER_USER not in PRINCIPALS


def test_each_rule_is_a_literal_topic_or_group_or_idempotent_write_and_may_agrees():
    for row in PRINCIPALS.values():
        rules = acls(row)
        assert len(rules) == len(set(rules))
        assert {r.operation for r in rules if r.resource == "topic"} <= {"Read", "Write", "Describe"}
        assert all(not r.prefixed for r in rules if r.resource == "topic")
        assert any(r.resource == "cluster" for r in rules) == bool(row.writes)
        for topic in {t.name for t in TOPICS}:
            assert may(row.name, "Read", topic) == (topic in row.reads)
            assert may(row.name, "Write", topic) == (topic in row.writes)


def credentials_sh(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SECRETS_DIR"))}
    environment |= {"ESCROW_WORK": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", **env}
    return subprocess.run([str(LOCAL_SCRIPT), *args], capture_output=True, text=True, env=environment,
                          stdin=subprocess.DEVNULL)


def test_credentials_sh_hands_a_client_scram_over_sasl_by_default_and_keeps_the_secret_private(tmp_path):
    done = credentials_sh(tmp_path, "integrator")
    assert done.returncode == 0, done.stderr
    credentials = Credentials.parse(done.stdout)
    assert (credentials.security_protocol, credentials.sasl_mechanism, credentials.sasl_username) == (
        "SASL_PLAINTEXT", "SCRAM-SHA-512", "integrator")
    secret = tmp_path / "secrets" / "kafka-integrator"
    assert credentials.sasl_password == secret.read_text() and len(credentials.sasl_password) == 32
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    assert Credentials.parse(credentials_sh(tmp_path, "integrator").stdout) == credentials  # made once
    options = credentials.kafka_options()
    assert options["sasl_plain_username"] == "integrator" and options["security_protocol"] == "SASL_PLAINTEXT"
    assert credentials.service_env()["KAFKA_SASL_USERNAME"] == "integrator"


def test_credentials_sh_with_tls_names_the_ca_and_the_super_user_logs_in_with_plain(tmp_path):
    tls = Credentials.parse(credentials_sh(tmp_path, "admin", KAFKA_SECURITY_PROTOCOL="SASL_SSL").stdout)
    assert tls.security_protocol == "SASL_SSL" and tls.ssl_ca_location == str(tmp_path / "tls" / "ca.crt")
    assert tls.service_env()["KAFKA_SSL_CAFILE"] == tls.ssl_ca_location
    assert Credentials.parse(credentials_sh(tmp_path, SUPER_USER).stdout).sasl_mechanism == "PLAIN"
    exports = credentials_sh(tmp_path, "--env", "escrow").stdout
    assert "KAFKA_SASL_USERNAME=escrow" in exports and exports.startswith("export KAFKA_BOOTSTRAP_SERVERS=")
    assert credentials_sh(tmp_path, "mallory").returncode == 2
    assert repr(tls).count(tls.sasl_password or "-") == 0  # never printed by accident
