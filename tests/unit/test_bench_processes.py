"""The benchmark's processes per service: one each unless a service is given its own count (--processes)."""

from pathlib import Path

import pytest

from bench.services import BENCH_SERVICES, BenchPlatform

pytestmark = pytest.mark.unit


def platform(tmp_path: Path, **counts) -> BenchPlatform:
    return BenchPlatform("127.0.0.1:1", "postgresql+asyncpg://nobody@127.0.0.1:1", "b_", 40000, tmp_path, **counts)


@pytest.mark.parametrize("counts, expected", [
    ({}, {"contracts": 1, "billing": 1, "escrow": 1, "notifications": 1}),
    ({"instances": 4}, {"contracts": 4, "billing": 4, "escrow": 4, "notifications": 4}),
    ({"processes": {"contracts": 2}}, {"contracts": 2, "billing": 1, "escrow": 1, "notifications": 1}),
    ({"instances": 2, "processes": {"escrow": 3}}, {"contracts": 2, "billing": 2, "escrow": 3, "notifications": 2}),
])
def test_each_service_runs_its_own_count_or_the_common_one(tmp_path, counts, expected):
    bench = platform(tmp_path, **counts)
    assert {s: bench.count(s) for s in BENCH_SERVICES} == expected


def test_every_process_of_a_service_has_a_port_of_its_own(tmp_path):
    bench = platform(tmp_path, processes={"contracts": 3})
    ports = [bench.port(s, i) for s in BENCH_SERVICES for i in range(bench.count(s))]
    assert len(ports) == len(set(ports)) == 6
