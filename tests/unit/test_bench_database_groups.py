"""The benchmark's CPU by PostgreSQL database (bench/stats.py, postgres_group, `by_database`), the processes every run
counts (counted), and the bonus batch's split of the machine's CPU over its groups (bench/bonus_batch.py, machine_cpu)."""

import os

import pytest

from bench.bonus_batch import machine_cpu
from bench.stats import (
    BENCHMARK_DATABASES, BROKER, ENDED_POSTGRES, GATEWAY_DATABASE, LOAD_GENERATOR, OTHER_POSTGRES, CpuSnapshot, counted,
    postgres_group,
)

pytestmark = pytest.mark.unit

PREFIX = "bench_bonus_"
BILLING = "postgres: billing_app bench_bonus_billing 127.0.0.1(40112) idle"
ESCROW = "postgres: escrow_app bench_bonus_escrow 127.0.0.1(40113) UPDATE"
GATEWAY = "postgres: billing_app bench_bonus_gateway 127.0.0.1(40114) idle"
SOMEONE_ELSES = "postgres: app shop 127.0.0.1(40115) idle"
SERVER = "postgres: walwriter "
VACUUMING = "postgres: autovacuum worker bench_bonus_billing"
VACUUMING_THE_GATEWAY = "postgres: autovacuum worker bench_bonus_gateway"


@pytest.mark.parametrize("cmdline, together, apart", [
    (BILLING, BENCHMARK_DATABASES, "postgres: database bench_bonus_billing"),
    (ESCROW, BENCHMARK_DATABASES, "postgres: database bench_bonus_escrow"),
    (GATEWAY, GATEWAY_DATABASE, GATEWAY_DATABASE),  # the stand-in stays apart either way
    (VACUUMING, BENCHMARK_DATABASES, "postgres: database bench_bonus_billing"),  # its database is its last word
    (VACUUMING_THE_GATEWAY, GATEWAY_DATABASE, GATEWAY_DATABASE),
    (SOMEONE_ELSES, OTHER_POSTGRES, OTHER_POSTGRES),
    (SERVER, OTHER_POSTGRES, OTHER_POSTGRES),
])
def test_each_backend_goes_to_its_database_only_when_asked(cmdline, together, apart):
    assert postgres_group(cmdline, PREFIX) == together
    assert postgres_group(cmdline, PREFIX, by_database=True) == apart


def snapshot(by_pid: dict[int, tuple[str, float]], reaped: float, busy: float, idle: float,
             steal: float = 0.0) -> CpuSnapshot:
    return CpuSnapshot(by_pid, busy, idle, {}, {1: reaped}, steal)


def test_a_database_backend_that_ended_is_counted_once():
    """Its CPU up to the first snapshot was seen then; what its server reaps of it later counts only the rest."""
    billing_db = postgres_group(BILLING, PREFIX, by_database=True)
    before = snapshot({1: (OTHER_POSTGRES, 1.0), 10: (billing_db, 5.0), 11: ("billing", 2.0)}, reaped=0.0,
                      busy=100.0, idle=50.0)
    after = snapshot({1: (OTHER_POSTGRES, 1.5), 11: ("billing", 6.0)}, reaped=7.0, busy=112.0, idle=50.0)
    used = after.since(before, wall_seconds=6.0)
    # 7 s reaped, of which 5 s were seen in the first snapshot: 2 s of this interval (not 7)
    assert used["cpu_seconds"] == {OTHER_POSTGRES: 0.5, "billing": 4.0, ENDED_POSTGRES: 2.0}
    assert used["machine_busy_fraction"] == 1.0


def test_the_hypervisors_steal_is_shown_apart_and_stays_in_busy():
    """A core given to another guest looks busy from inside: the fraction says how much of busy was not ours."""
    before = snapshot({11: ("billing", 2.0)}, reaped=0.0, busy=100.0, idle=50.0, steal=10.0)
    after = snapshot({11: ("billing", 6.0)}, reaped=0.0, busy=116.0, idle=54.0, steal=12.0)
    used = after.since(before, wall_seconds=10.0)
    assert used["machine_busy_fraction"] == 0.8
    assert used["machine_steal_fraction"] == 0.1
    assert machine_cpu(used, bonuses=1_000)["machine_steal_fraction"] == 0.1


def test_the_batch_split_gives_each_group_its_share_and_its_cpu_a_bonus():
    used = {"machine_busy_fraction": 0.98,
            "cpu_seconds": {"billing": 240.0, "postgres: database bench_bonus_billing": 200.0, "escrow": 200.0,
                            GATEWAY_DATABASE: 40.0, ENDED_POSTGRES: 120.0}}
    split = machine_cpu(used, bonuses=1_000_000)
    assert split["total_cpu_ms_per_bonus"] == 0.8
    assert split["cpu_ms_per_bonus"]["billing"] == 0.24
    assert split["share"] == {"billing": 0.3, "postgres: database bench_bonus_billing": 0.25, "escrow": 0.25,
                              GATEWAY_DATABASE: 0.05, ENDED_POSTGRES: 0.15}
    assert split["machine_busy_fraction"] == 0.98


def test_every_run_counts_its_services_the_load_generator_and_a_local_broker():
    assert counted({101: "billing", 102: "escrow"}, 900) == {101: "billing", 102: "escrow",
                                                             os.getpid(): LOAD_GENERATOR, 900: BROKER}
    assert counted({101: "billing"}, None) == {101: "billing", os.getpid(): LOAD_GENERATOR}  # a remote broker
