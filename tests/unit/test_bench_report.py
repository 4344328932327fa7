"""The benchmark's arithmetic on a made-up run: the floor of the same run, stalls, the verdict, the printout."""

import pytest

from bench import database_work
from bench.calibration import cpu_calibration
from bench.report import floor, p99_capacity, ratios, report, verdict
from bench.stats import stalls, tail

pytestmark = pytest.mark.unit


def raw() -> dict:
    commit = {"commits_per_second": 2000.0, "commit_ms": {"p50": 0.5, "p99": 2.0}}
    return {"kafka": {"round_trip_ms": {"p50": 1.0, "p99": 3.0, "mean": 1.2}, "produce_ack_ms": {"p50": 0.5}},
            "postgres": {"single_connection": {"connections": 1, **commit},
                         "concurrent": [{"connections": 8, "commits_per_second": 4200.0, "commit_ms": {"p50": 1, "p99": 4}}],
                         "batched_single_connection": {"steps_per_commit": 50, "steps_per_second": 6000.0}}}


def phase(**extra) -> dict:
    return {"outcomes": {"OfferSent": 10}, "all_completed": True, "platform_cpu_ms_per_saga": 20.0,
            "cpu_ms_per_saga": {"contracts": 10.0}, "load_generator_cpu_ms_per_saga": 1.0,
            "cpu": {"nproc": 2, "machine_busy_fraction": 0.9, "cores_used": {}}, "load_average": [1, 1, 1], **extra}


def fund() -> dict:
    latency = [phase(offered_rate_per_second=rate, seconds=10, worst_send_lag_ms=3.0,
                     latency_ms={"count": 10, "p50": p50, "p99": p99, "max": p99},
                     stalls=stalls([(0.1, 0.2)]), tail=tail([(0.1, 0.2), (1.2, 0.1)], 0.0))
               for rate, p50, p99 in ((20, 76.0, 200.0), (100, 900.0, 4000.0))]
    return {"processes_per_service": 1, "warmup": {"offers": 5, "latency_ms": {"p50": 2000.0, "max": 3000.0},
                                                    "stalls": stalls([(0.0, 3.0), (0.5, 0.1)])},
            "latency": latency, "burst": phase(burst=100, sagas_per_second=50.0, seconds_to_last_offer_sent=2.0,
                                               latency_ms={"p50": 1.0}),
            "ledger_check_ok": True, "saga_statuses": {"completed": 135}}


def run_result(fund_saga: dict, **extra) -> dict:
    """A whole run's result around this fund saga phase, as `python -m bench` saves it, for the printout."""
    return {"started_at": "2026-12-02T00:00:00Z", "machine": {"git_commit": "abc", "nproc": 2, "python": "3.11"},
            "load_average_at_start": [1, 1, 1], "load_average_at_end": [2, 2, 2], "raw_limits": raw(),
            "floor": floor(raw()), "fund_saga": fund_saga, "ratios": ratios(raw(), fund_saga),
            "verdict": verdict(fund_saga, floor(raw())), **extra}


def test_the_floor_is_hops_times_the_round_trip_plus_commits_times_the_commit_of_the_same_run():
    bottom = floor(raw())
    # 5 hops and 6 commits: escrow holds on ClientCharged (no HoldEscrow), the simulator charges in one commit
    assert bottom["saga_path_ms_p50"] == 5 * 1.0 + 6 * 0.5
    assert bottom["commit_bound_sagas_per_second_unbatched"] == round(4200 / 6, 1)


def test_a_slow_saga_is_a_stall_reported_with_when_it_was_scheduled():
    found = stalls([(0.0, 3.0), (0.5, 0.1), (2.25, float("inf"))])
    assert found["count"] == 2 and found["scheduled_at_s"] == [0.0, 2.25]


def test_a_pause_gathers_the_slowest_sagas_in_the_seconds_it_touched_and_a_tail_alike_in_every_second_spreads():
    # 100 sagas a second for 10 s; a pause at 6 s makes that second's sagas the slowest
    paused = [(s + i / 100, 0.400 if s == 6 and i < 20 else 0.050 + i / 10_000) for s in range(10) for i in range(100)]
    found = tail(paused, started_unix=1_700_000_000.0)
    assert found["slowest"] == 10 and found["slower_than_ms"] == 400.0
    assert found["seconds_holding_them"] == 1 and found["of_seconds"] == 10
    assert found["worst_seconds"][0] == {"second": 6, "slowest": 10, "max_ms": 400.0}
    assert found["per_second_max_ms"][6] == 400.0
    assert found["per_second_p50_ms"][5] == 54.9  # nearest rank: the 50th of 100
    # the same latencies without the pause, the last saga of every second as slow as any: one in each second
    alike = tail([(at, 0.050 + (at % 1) / 10) for at, _s in paused], started_unix=1_700_000_000.0)
    assert alike["seconds_holding_them"] == 10
    assert all(worst["slowest"] == 1 for worst in alike["worst_seconds"])


def test_the_slowest_share_is_rounded_up_never_to_even():
    for count, slowest in ((150, 2), (250, 3), (3000, 30), (50, 1)):
        assert tail([(i / 10, i / 1000) for i in range(count)], started_unix=0.0)["slowest"] == slowest


def test_a_second_no_saga_was_scheduled_in_has_no_figure_and_no_saga_no_tail():
    found = tail([(0.5, 0.1), (2.5, 0.2)], started_unix=0.0)
    assert found["per_second_max_ms"] == [100.0, None, 200.0] and found["per_second_p50_ms"][1] is None
    assert found["of_seconds"] == 3  # the phase's seconds, the empty one too
    assert tail([], started_unix=0.0) == {"slowest": 0}


def test_the_verdict_says_met_or_missed_and_by_how_much():
    checks = verdict(fund(), floor(raw()))
    assert checks["burst sagas/s >= 500"] == {"met": False, "measured": 50.0, "target": 500, "off_by_factor": 10.0}
    assert checks["p99 ms at 100/s <= 100"]["off_by_factor"] == 40.0
    assert checks["p50 ms at 20/s <= 10 x floor (80.0 ms)"]["met"] is True
    assert checks["platform CPU ms per saga <= 4"]["met"] is False


def test_the_printout_puts_the_floor_beside_each_figure(capsys):
    report(run_result(fund()))
    out = capsys.readouterr().out
    assert "p50 76.0 ms (9.5 x floor 8.0 ms)" in out
    assert "STALL: 1 saga(s) over 1000 ms" in out and "[MISSED] burst sagas/s >= 500" in out
    assert "tail: the slowest 1 (200.0 ms or more) were scheduled in 1 of 2 seconds; the most in 0 s (1, max 200.0 ms)" in out


def test_the_traced_run_for_the_hops_is_printed_apart_and_never_counted_against_a_target(capsys):
    run = fund()
    run["hops_run"] = phase(offered_rate_per_second=20, seconds=5, worst_send_lag_ms=1.0, stalls=stalls([]),
                            latency_ms={"count": 5, "p50": 500.0, "p99": 900.0, "max": 900.0},
                            hops_ms={"contracts: SendOffer -> ChargeClient published": {"p50": 40.0, "p99": 80.0}})
    checks = verdict(run, floor(raw()))
    assert checks["p50 ms at 20/s <= 10 x floor (80.0 ms)"] == verdict(fund(), floor(raw()))[
        "p50 ms at 20/s <= 10 x floor (80.0 ms)"]  # the untraced run's 76 ms, not the traced run's 500
    report(run_result(run, verdict=checks))
    out = capsys.readouterr().out
    assert "Hops, a separate run at 20 offers/s" in out and "not a target's figure" in out
    assert "hop contracts: SendOffer -> ChargeClient published: p50 40.0 ms" in out


def test_the_bonus_target_follows_the_batch_size_and_a_batch_that_never_completed_is_a_missed_target():
    from bench.bonus_batch import time_allowed
    from bench.report import bonus_target_seconds

    assert bonus_target_seconds(100_000) == 60 and bonus_target_seconds(1_000_000) == 480
    assert time_allowed(100_000) == 600 and time_allowed(1_000_000) == 4800
    done = verdict(None, None, {"bonuses": 100_000, "target_seconds": 60, "batch": {"seconds_to_completed_event": 75}})
    assert done == {"bonus batch of 100,000 bonuses: seconds <= 60": {
        "met": False, "measured": 75, "target": 60, "off_by_factor": 1.25}}
    stalled = verdict(None, None, {"bonuses": 1_000_000, "target_seconds": 480,
                                   "batch": {"timed_out": "no BonusBatchCompleted within 4800 s"}})
    assert stalled["bonus batch of 1,000,000 bonuses: seconds <= 480"]["met"] is False


def test_a_setting_given_for_one_service_reaches_that_service_alone_and_wins_there():
    from tests.support.processes import for_service

    given = {"CONSUMER_MAX_RECORDS": "500", "billing:CONSUMER_FETCH_MIN_BYTES": "1", "billing:CONSUMER_MAX_RECORDS": "50"}
    assert for_service(given, "billing") == {"CONSUMER_MAX_RECORDS": "50", "CONSUMER_FETCH_MIN_BYTES": "1"}
    assert for_service(given, "contracts") == {"CONSUMER_MAX_RECORDS": "500"}


def test_the_statements_that_took_a_phases_database_time_are_per_saga_the_platforms_and_largest_first(capsys):
    """Largest first by the database's time, execution and planning: a statement planned at every execution ranks by
    both, and the report says so."""
    counts = database_work.StatementCounts
    before = {"contracts": {"commits": 10, "statements": 40, "plans": 5, "planning_ms": 1.0},
              "by statement": {("contracts", 1): counts(100, 50.0, 1000, "UPDATE timers", 100, 20.0),
                               ("contracts", 2): counts(10, 5.0, 100, "SELECT sagas", 1, 0.1)}}
    after = {"contracts": {"commits": 30, "statements": 100, "plans": 25, "planning_ms": 31.0},
             "by statement": {("contracts", 1): counts(120, 90.0, 1800, "UPDATE timers", 120, 50.0),  # 20 calls, 40 + 30 ms
                              ("contracts", 2): counts(30, 65.0, 300, "SELECT sagas", 1, 0.1),  # 20 calls, 60 ms, no plan
                              ("contracts", 3): counts(5, 1.0, 10, "SELECT 1"),  # new in the phase: 5 calls, 1 ms
                              ("gateway", 4): counts(50, 500.0, 9, "SELECT sim_charge()")}}  # a stand-in, not ours
    top = database_work.top_statements(before, after, sagas=10, platform=("contracts",))
    assert [(r["statement"], r["calls_per_saga"], r["exec_ms_per_saga"], r["buffer_hits_per_saga"],
             r["plans_per_saga"], r["plan_ms_per_saga"]) for r in top] == [
        ("UPDATE timers", 2.0, 4.0, 80.0, 2.0, 3.0), ("SELECT sagas", 2.0, 6.0, 20.0, 0.0, 0.0),
        ("SELECT 1", 0.5, 0.1, 1.0, 0.0, 0.0)]
    assert [r["share_of_exec"] for r in top] == [0.396, 0.594, 0.01]  # of 10.1 ms of execution
    # the per-statement rows are not a database of their own in the commits and statements per saga
    work = database_work.per_saga(before, after, 10, ("contracts",))
    assert set(work) == {"contracts", "platform"}
    assert work["platform"] == {"commits": 2.0, "statements": 6.0, "plans": 2.0, "planning_ms": 3.0}
    report({"started_at": "t", "machine": {"nproc": 2, "python": "3.11"}, "load_average_at_start": [0, 0, 0],
            "fund_saga": {**fund(), "burst": phase(burst=100, sagas_per_second=50.0, top_statements=top,
                                                    database_work_per_saga=work, seconds_to_last_offer_sent=2.0,
                                                    latency_ms={"p50": 1.0})}})
    out = capsys.readouterr().out
    assert ("most database time per saga: contracts 4.000 ms (40%; 2 statements, 80 pages; planned 2 times, 3.000 ms)"
            " 'UPDATE timers'; contracts 6.000 ms (59%; 2 statements, 20 pages) 'SELECT sagas'") in out
    assert "database work per saga: contracts 2.0 commits 6.0 statements 2.0 plans (3.0 ms)" in out


def sweep(*runs: tuple[float, float, bool]) -> dict:
    """A fund run whose latency runs are (rate, p99, every saga completed), in the order given."""
    return {"latency": [phase(offered_rate_per_second=rate, all_completed=completed,
                              latency_ms={"count": 10, "p50": p99 / 2, "p99": p99, "max": p99})
                        for rate, p99, completed in runs]}


@pytest.mark.parametrize(("runs", "held", "missed"), [
    # the first rate that misses ends it, even if a higher one met by luck (what an operator can rely on)
    ([(40, 58.5, True), (50, 97.3, True), (55, 112.7, True), (60, 95.0, True)], 50, 55),
    # the order they ran in does not matter (a sweep downwards, to see the hour's drift)
    ([(60, 95.0, True), (55, 112.7, True), (50, 97.3, True), (40, 58.5, True)], 50, 55),
    ([(20, 40.0, True), (100, 201.4, True)], 20, 100),  # the default run's two rates
    ([(20, 40.0, True), (100, 90.0, True)], 100, None),  # met at every rate run
    ([(40, 150.0, True), (50, 180.0, True)], None, 40),  # at none
    ([(40, 58.5, True), (50, 80.0, False)], 40, 50),  # a rate that lost a saga does not hold, whatever its p99
])
def test_the_capacity_is_the_highest_rate_up_to_which_every_rate_kept_the_p99_target(runs, held, missed):
    capacity = p99_capacity(sweep(*runs))
    assert (capacity["held_up_to_offers_per_second"], capacity["first_missed_at_offers_per_second"]) == (held, missed)
    assert capacity["target_p99_ms"] == 100


def test_one_rate_says_nothing_of_the_capacity_and_the_printout_says_what_it_found(capsys):
    assert p99_capacity(sweep((100, 90.0, True))) is None and p99_capacity(None) is None
    found = p99_capacity(sweep((40, 58.5, True), (50, 97.3, True), (55, 112.7, True)))
    report({"started_at": "t", "machine": {"nproc": 2, "python": "3.11"}, "load_average_at_start": [0, 0, 0],
            "p99_capacity": found})
    assert ("Capacity: p99 <= 100 ms held up to 50 offers/s, first missed at 55/s "
            "(p99 ms by rate: {'40': 58.5, '50': 97.3, '55': 112.7})") in capsys.readouterr().out


def test_the_machines_speed_and_the_hypervisors_steal_are_printed_beside_the_run(capsys):
    """A run's figures next to how fast the machine ran the same fixed work at its start and end, and how much of
    each phase's busy time the hypervisor took: a slow hour told from a slower platform."""
    calibration = cpu_calibration(repeats=3, warm_up_seconds=0)  # the figure's shape; the warm-up is a run's cost
    assert calibration["cpu_ms_median"] in calibration["cpu_ms"] and min(calibration["cpu_ms"]) > 0
    fund_saga = fund()
    fund_saga["burst"]["cpu"]["machine_steal_fraction"] = 0.012
    report(run_result(fund_saga, cpu_calibration_at_start={"cpu_ms_median": 30.1, "cpu_ms": [30.1]},
                      cpu_calibration_at_end={"cpu_ms_median": 33.4, "cpu_ms": [33.4]}))
    out = capsys.readouterr().out
    assert "CPU calibration 30.1 ms at start, 33.4 at end" in out
    assert "machine busy 90% (of which stolen by the hypervisor 1.2%)" in out


def test_the_interpreter_that_ran_is_printed_where_recorded(capsys):
    """Builds of one version differ (a distribution's, with PGO and LTO, ran a fixed work in 0.61-0.72 of pyenv's
    time): a run says which it had. Runs from before it was recorded print the version alone."""
    result = run_result(fund())
    report(result)
    assert "Python 3.11, load average" in capsys.readouterr().out
    result["machine"]["python_interpreter"] = "/usr/bin/python3.11"
    report(result)
    assert "Python 3.11 (/usr/bin/python3.11), load average" in capsys.readouterr().out


def test_notifications_catch_up_after_a_burst_is_printed_beside_the_bursts_cpu_and_never_judged(capsys):
    run = fund()
    run["burst"]["notifications_caught_up"] = {
        "seconds_after_the_window": 1.8, "platform_cpu_ms_per_saga": 24.5,
        "cpu_ms_per_saga": {"notifications": 3.0, "smtp sink (stand-in of the mail server)": 0.5,
                            "postgres: benchmark databases": 6.0}}
    checks = verdict(run, floor(raw()))
    assert checks == verdict(fund(), floor(raw()))  # the burst's window is the target's figure
    report(run_result(run, verdict=checks))
    out = capsys.readouterr().out
    assert ("notifications caught up 1.8 s after the window; from the burst's start to then: platform CPU 24.5 ms/saga"
            " (notifications 3.0, its mail stand-in 0.5, PostgreSQL's benchmark databases 6.0)") in out
    run["burst"]["notifications_caught_up"] = {"seconds_after_the_window": None}
    report(run_result(run, verdict=checks))
    assert "notifications had not caught up 120 s after the window  <- FINDING" in capsys.readouterr().out
