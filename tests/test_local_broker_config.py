"""The local broker keeps a bounded number of bytes per partition unless told to keep everything: the event topics
keep everything (CONTRACT.md), and a week of benchmarks on one local broker filled the disk (issue 10, thirty-first
step). The bound is the local machine's: deploy/k8s sets only the topics' `retention.ms`."""

import os
import subprocess

import pytest

from tests.infra import ROOT

pytestmark = pytest.mark.unit
SCRIPT = ROOT / "deploy" / "local" / "kafka" / "kafka-local.sh"


def render(tmp_path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), "config"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                          env={**os.environ, "KAFKA_WORK": str(tmp_path), "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", **env})


def properties(tmp_path, **env) -> dict[str, str]:
    done = render(tmp_path, **env)
    assert done.returncode == 0, done.stderr
    lines = open(done.stdout.strip()).read().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_each_partition_keeps_256_mib_in_segments_of_64_mib_by_default(tmp_path):
    rendered = properties(tmp_path)
    assert rendered["log.retention.bytes"] == str(256 * 2**20)
    assert rendered["log.segment.bytes"] == str(64 * 2**20)
    assert rendered["log.dirs"] == str(tmp_path / "data")


@pytest.mark.parametrize("bytes_", ["-1", "1073741824"])
def test_the_bound_is_set_by_the_environment_and_minus_one_keeps_everything(tmp_path, bytes_):
    assert properties(tmp_path, KAFKA_LOCAL_RETENTION_BYTES=bytes_)["log.retention.bytes"] == bytes_


@pytest.mark.parametrize("bytes_", ["1;rm", "256MiB", "-2"])
def test_anything_but_a_number_of_bytes_is_refused(tmp_path, bytes_):
    done = render(tmp_path, KAFKA_LOCAL_RETENTION_BYTES=bytes_)
    assert done.returncode != 0 and "KAFKA_LOCAL_RETENTION_BYTES" in done.stderr


def test_the_kubernetes_topics_bound_nothing_but_time():
    topics = (ROOT / "deploy" / "k8s" / "base" / "kafka" / "topics.yaml").read_text()
    assert "retention.ms" in topics and "retention.bytes" not in topics
