"""A fresh local broker always starts: the cluster ids that deploy/local/kafka/kafka-local.sh and the Docker
branch of tests/infra.py generate never begin with '-' (Kafka's storage tool would read such an id as an
option, "argument --cluster-id/-t: expected one argument": 1 random id in 64) and are valid Kafka uuids."""

import base64
import re
import subprocess

import pytest

from tests.infra import ROOT, kafka_cluster_id

pytestmark = pytest.mark.unit
SCRIPT = ROOT / "deploy" / "local" / "kafka" / "kafka-local.sh"
# Without the fix about 1 in 64 ids begins with '-': 1,000 draws all missing it is a chance of 1.5e-7.
DRAWS = 1000
BASE64URL_UUID = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")  # 16 bytes: the last char carries 2 bits


def assert_kafka_uuid(cluster_id: str) -> None:
    assert BASE64URL_UUID.fullmatch(cluster_id), cluster_id
    assert not cluster_id.startswith("-"), cluster_id
    raw = base64.urlsafe_b64decode(cluster_id + "==")
    assert len(raw) == 16 and base64.urlsafe_b64encode(raw).decode().rstrip("=") == cluster_id
    assert raw not in (bytes(16), bytes(15) + b"\x01")  # Kafka's reserved ZERO and METADATA_TOPIC ids


def test_the_local_broker_script_never_generates_an_id_beginning_with_a_dash():
    # The script's own function, the one `start` uses to format a fresh data directory.
    done = subprocess.run([str(SCRIPT), "cluster-id", str(DRAWS)], capture_output=True, text=True, check=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    ids = done.stdout.split()
    assert len(ids) == DRAWS
    for cluster_id in ids:
        assert_kafka_uuid(cluster_id)
    assert len(set(ids)) == DRAWS
    assert {i[0] for i in ids} > {"A", "_"}  # random first chars, '-' excepted ('_' is fine)


def test_the_docker_branch_never_generates_an_id_beginning_with_a_dash():
    ids = [kafka_cluster_id() for _ in range(20 * DRAWS)]
    for cluster_id in ids:
        assert_kafka_uuid(cluster_id)
    assert len(set(ids)) == len(ids)
