"""What a benchmark run found: the floor of the same run, the ratios to it, the verdict against the targets,
the printout and the result files."""

import json
from pathlib import Path

from .services import SMTP_SINK
from .stats import BENCHMARK_DATABASES

RESULTS = Path(__file__).resolve().parent / "results"

# The critical path of one fund saga: 5 Kafka hops (SendOffer, ChargeClient, ClientCharged, EscrowFunded, OfferSent;
# escrow holds on billing's ClientCharged, and contracts' HoldEscrow goes only after the hold's deadline) and 6 commits:
# the 4 consumer transactions on the path (contracts 2, billing 1, escrow 1), billing's gateway loop writing the
# charge's outcome, and the gateway simulator's 1. (Before the nineteenth step of issue 10: 6 hops, HoldEscrow the
# fourth, and 7 commits, contracts' transaction of ClientCharged the third; before that, 2 for the simulator, and 7 in
# all before billing's gateway loop moved the call out of the consumer transaction, then 8.)
# Its floor on this machine, measured in the same
# run: HOPS x the Kafka round trip + COMMITS x one PostgreSQL commit, both at p50 (and both at p99).
HOPS = 5
COMMITS = 6

# Issue 10's targets for this step.
TARGET_BURST_SAGAS_PER_SECOND = 500  # a burst of 5,000, all four services running
TARGET_P99_MS_AT_100 = 100  # at 100 offers/s, latency from the scheduled send time
TARGET_P50_FLOOR_MULTIPLE_AT_20 = 10  # p50 at 20 offers/s at most 10 x the floor of the same run
TARGET_CPU_MS_PER_SAGA = 4  # all the platform's processes together
TARGET_BONUS_SECONDS = 60  # 100,000 bonuses of 10,000 clients
TARGET_BONUS_SECONDS_PER_MILLION = 480  # 1,000,000 bonuses in 8 minutes


def bonus_target_seconds(bonuses: int) -> float:
    """The bonus batch's target for its size: 60 s up to 100,000 bonuses, then 8 minutes per 1,000,000."""
    return TARGET_BONUS_SECONDS if bonuses <= 100_000 else TARGET_BONUS_SECONDS_PER_MILLION * bonuses / 1_000_000


def floor(raw: dict | None) -> dict:
    """The raw floor of the same run: one Kafka round trip, one PostgreSQL commit, and the saga path's."""
    if not raw:
        return {}
    rt, commit = raw["kafka"]["round_trip_ms"], raw["postgres"]["single_connection"]["commit_ms"]
    pg = raw["postgres"]
    best = max(pg["concurrent"] + [pg["single_connection"]], key=lambda r: r["commits_per_second"])
    return {"kafka_round_trip_ms_p50": rt["p50"], "kafka_round_trip_ms_p99": rt["p99"],
            "pg_commit_ms_p50": commit["p50"], "pg_commit_ms_p99": commit["p99"],
            "hops": HOPS, "commits": COMMITS,
            "saga_path_ms_p50": round(HOPS * rt["p50"] + COMMITS * commit["p50"], 2),
            "saga_path_ms_p99": round(HOPS * rt["p99"] + COMMITS * commit["p99"], 2),
            "pg_commits_per_second_best": best["commits_per_second"],
            "pg_batched_steps_per_second": pg["batched_single_connection"]["steps_per_second"],
            # Sagas/s if commits were the only limit: one saga needs COMMITS commits (unbatched).
            "commit_bound_sagas_per_second_unbatched": round(best["commits_per_second"] / COMMITS, 1)}


def _print_hops(run: dict) -> None:
    for stage, hop in run.get("hops_ms", {}).items():
        print(f"  hop {stage}: p50 {hop.get('p50')} ms, p99 {hop.get('p99')} ms")


def _latency_at(fund: dict, rate: float) -> dict | None:
    return next((run for run in fund.get("latency", []) if run["offered_rate_per_second"] == rate), None)


def ratios(raw: dict | None, fund: dict | None) -> dict:
    if not raw or not fund:
        return {}
    bottom = floor(raw)
    out: dict = {}
    for run in fund.get("latency", []):
        rate, latency = f"{run['offered_rate_per_second']:g}", run["latency_ms"]
        if latency.get("count"):
            out[f"p50_at_{rate}_over_saga_path_floor"] = round(latency["p50"] / bottom["saga_path_ms_p50"], 1)
            out[f"p99_at_{rate}_over_saga_path_floor_p99"] = round(latency["p99"] / bottom["saga_path_ms_p99"], 1)
    if burst := fund.get("burst"):
        out["burst_sagas_per_second_over_commit_bound"] = round(
            burst["sagas_per_second"] / bottom["commit_bound_sagas_per_second_unbatched"], 3)
        out.update(cpu_capacity(burst))
    return out


def p99_capacity(fund: dict | None, target_ms: float = TARGET_P99_MS_AT_100) -> dict | None:
    """Up to what offered rate the p99 stayed within the target (issue 10's 100 ms): the highest rate run whose p99
    and every lower rate's met it. What an operator sizes for; a run with one rate says too little (None).
    Rates are taken in order of rate, whatever order they ran in; a rate that lost a saga does not hold."""
    runs = sorted((r for r in (fund or {}).get("latency", []) if r["latency_ms"].get("count")),
                  key=lambda r: r["offered_rate_per_second"])
    if len(runs) < 2:
        return None
    p99 = {f"{r['offered_rate_per_second']:g}": r["latency_ms"]["p99"] for r in runs}
    held, missed = None, None
    for run in runs:
        if run["latency_ms"]["p99"] <= target_ms and run.get("all_completed"):
            held = run["offered_rate_per_second"]
            continue
        missed = run["offered_rate_per_second"]
        break
    return {"target_p99_ms": target_ms, "held_up_to_offers_per_second": held,
            "first_missed_at_offers_per_second": missed, "p99_ms_by_rate": p99}


def cpu_capacity(phase: dict) -> dict:
    """CPU one saga costs on its path at saturation, and the sagas per second that would allow if every core
    of the machine were the platform's."""
    total = phase.get("platform_cpu_ms_per_saga")
    if not total:
        return {}
    return {"platform_cpu_ms_per_saga": total,
            "sagas_per_second_if_all_cores_were_the_platforms": round(1000 * phase["cpu"]["nproc"] / total, 1)}


def verdict(fund: dict | None, bottom: dict | None = None, bonus: dict | None = None) -> dict:
    """Each target: met or not, and the measured value beside it."""
    out: dict = {}
    if fund:
        if burst := fund.get("burst"):
            out[f"burst sagas/s >= {TARGET_BURST_SAGAS_PER_SECOND}"] = _check(
                burst["sagas_per_second"], TARGET_BURST_SAGAS_PER_SECOND, at_least=True)
            if cpu := burst.get("platform_cpu_ms_per_saga"):
                out[f"platform CPU ms per saga <= {TARGET_CPU_MS_PER_SAGA}"] = _check(cpu, TARGET_CPU_MS_PER_SAGA)
        if (run := _latency_at(fund, 100)) and run["latency_ms"].get("count"):
            out[f"p99 ms at 100/s <= {TARGET_P99_MS_AT_100}"] = _check(run["latency_ms"]["p99"], TARGET_P99_MS_AT_100)
        if (run := _latency_at(fund, 20)) and run["latency_ms"].get("count") and bottom:
            limit = round(TARGET_P50_FLOOR_MULTIPLE_AT_20 * bottom["saga_path_ms_p50"], 2)
            out[f"p50 ms at 20/s <= {TARGET_P50_FLOOR_MULTIPLE_AT_20} x floor ({limit} ms)"] = _check(
                run["latency_ms"]["p50"], limit)
        out["every saga completed with OfferSent"] = {"met": all_sent(fund)}
        out["ledger check ok"] = {"met": bool(fund.get("ledger_check_ok"))}
    if bonus:
        batch, target = bonus.get("batch") or {}, bonus_target_seconds(bonus.get("bonuses", 100_000))
        name = f"bonus batch of {bonus.get('bonuses', 100_000):,} bonuses: seconds <= {target:g}"
        if (seconds := batch.get("seconds_to_completed_event")) is not None:
            out[name] = _check(seconds, target)
        elif batch.get("timed_out"):  # a batch that never completed is reported, never left out
            out[name] = {"met": False, "measured": None, "target": target, "timed_out": batch["timed_out"]}
    return out


def _check(value: float, target: float, at_least: bool = False) -> dict:
    met = value >= target if at_least else value <= target
    # How far off: the factor between the measured value and the target (1.0 = exactly on it).
    factor = (target / value if value else float("inf")) if at_least else value / target
    return {"met": met, "measured": value, "target": target, "off_by_factor": round(factor, 2)}


def all_sent(fund: dict) -> bool:
    phases = [*fund.get("latency", []), *(fund[k] for k in ("hops_run", "burst", "throughput") if k in fund)]
    return all(set(p["outcomes"]) == {"OfferSent"} and p["all_completed"] for p in phases)


def _beside(value: float | None, floor_ms: float | None) -> str:
    """A latency figure with the floor of the same run and their ratio."""
    if value is None:
        return "n/a"
    return f"{value} ms ({value / floor_ms:.1f} x floor {floor_ms} ms)" if floor_ms else f"{value} ms"


def _stalls(stalls: dict | None) -> str:
    if not stalls or not stalls["count"]:
        return "no stall"
    return (f"STALL: {stalls['count']} saga(s) over {stalls['threshold_ms']:g} ms, worst {stalls['worst_ms']} ms, "
            f"scheduled at {stalls['scheduled_at_s']} s")


def _tail(tail: dict | None) -> str:
    """Where the slowest sagas fell: spread over the phase (a full queue) or gathered (a pause)."""
    if not tail or not tail.get("slowest"):
        return "tail: none"
    worst = ", ".join(f"{w['second']} s ({w['slowest']}, max {w['max_ms']} ms)" for w in tail["worst_seconds"])
    return (f"tail: the slowest {tail['slowest']} ({tail['slower_than_ms']} ms or more) were scheduled in "
            f"{tail['seconds_holding_them']} of {tail['of_seconds']} seconds; the most in {worst}")


def _caught_up(caught: dict) -> str:
    """The burst's work left after its window: notifications' catch-up (bench/catch_up.py)."""
    if caught.get("seconds_after_the_window") is None:
        return "notifications had not caught up 120 s after the window  <- FINDING"
    return (f"notifications caught up {caught['seconds_after_the_window']} s after the window; from the burst's start"
            f" to then: platform CPU {caught['platform_cpu_ms_per_saga']} ms/saga (notifications "
            f"{caught['cpu_ms_per_saga'].get('notifications')}, its mail stand-in "
            f"{caught['cpu_ms_per_saga'].get(SMTP_SINK)}, PostgreSQL's benchmark databases "
            f"{caught['cpu_ms_per_saga'].get(BENCHMARK_DATABASES)})")


def _cpu(phase: dict) -> str:
    return (f"platform CPU {phase.get('platform_cpu_ms_per_saga')} ms/saga "
            f"({phase.get('platform_cpu_ms_per_saga_net_of_idle')} net of the idle loops) "
            f"({json.dumps(phase.get('cpu_ms_per_saga'))}); load generator "
            f"{phase.get('load_generator_cpu_ms_per_saga')} ms/saga, apart; machine busy "
            f"{phase['cpu']['machine_busy_fraction']:.0%}{_steal(phase['cpu'])}, "
            f"load average {phase.get('load_average')}"
            f"{_database_work(phase.get('database_work_per_saga'))}{_top_statements(phase.get('top_statements'))}"
            f"{_kafka_work(phase)}")


def _steal(cpu: dict) -> str:
    """The hypervisor's share of the cores, counted in busy (runs before it was recorded have none)."""
    steal = cpu.get("machine_steal_fraction")
    return "" if steal is None else f" (of which stolen by the hypervisor {steal:.1%})"


def _kafka_work(phase: dict) -> str:
    """Batches and Kafka offset commits per saga by service (each commit is a request the broker handles)."""
    sagas, services = phase.get("offers") or phase.get("burst"), phase.get("services")
    if not sagas or not services:
        return ""
    parts = [f"{name} {s.get('batches', 0) / sagas:.2f} batches {s.get('offset_commits', 0) / sagas:.2f} offset commits"
             for name, s in services.items()]
    return "\n  consumer work per saga: " + ", ".join(parts)


def _top_statements(rows: list | None, shown: int = 3) -> str:
    """The statements that took the most of the databases' time (execution and planning), per saga."""
    if not rows:
        return ""
    parts = [f"{r['database']} {r['exec_ms_per_saga']:.3f} ms ({r['share_of_exec']:.0%}; {r['calls_per_saga']:g} "
             f"statements, {r['buffer_hits_per_saga']:g} pages"
             + (f"; planned {r['plans_per_saga']:g} times, {r['plan_ms_per_saga']:.3f} ms"
                if r.get("plans_per_saga") else "") + f") {r['statement'][:60]!r}"
             for r in rows[:shown]]
    return "\n  most database time per saga: " + "; ".join(parts)


def _database_work(work: dict | None) -> str:
    """Commits, statements and plans per saga by database (PostgreSQL's own counts: they hold on a loaded machine)."""
    if not work:
        return ""
    parts = [f"{name} {w.get('commits')} commits" + (f" {w['statements']} statements" if "statements" in w else "")
             + (f" {w['plans']} plans ({w['planning_ms']} ms)" if w.get("plans") else "")
             for name, w in work.items()]
    return "\n  database work per saga: " + ", ".join(parts)


def _calibration(result: dict) -> str:
    """The machine's speed beside the run (bench/calibration.py; runs before it was recorded have none)."""
    start, end = result.get("cpu_calibration_at_start"), result.get("cpu_calibration_at_end")
    if not start:
        return ""
    return (f"; CPU calibration {start['cpu_ms_median']} ms at start, "
            f"{end['cpu_ms_median'] if end else None} at end (the same work's CPU time: lower is faster)")


def _interpreter(machine: dict) -> str:
    """Which build ran: not recorded before the thirty-fourth step, whose earlier runs all give Python 3.11.7, the
    version of pyenv's build on these machines (the distribution's is 3.11.2)."""
    return f" ({machine['python_interpreter']})" if machine.get("python_interpreter") else ""


def report(result: dict) -> None:
    raw, fund, bottom = result.get("raw_limits"), result.get("fund_saga"), result.get("floor") or {}
    m = result["machine"]
    print(f"\n== benchmark {result['started_at']} on {m.get('git_commit', '')[:12]}"
          f"{' (+uncommitted changes)' if m.get('git_uncommitted_changes') else ''} | nproc {m['nproc']}, "
          f"Python {m['python']}{_interpreter(m)}, load average {result['load_average_at_start']} at start, "
          f"{result.get('load_average_at_end')} at end; disk free {result.get('disk_free_gib_at_start')} GiB at start, "
          f"{result.get('disk_free_gib_at_end')} at end{_calibration(result)}")
    if raw:
        k, pg = raw["kafka"], raw["postgres"]
        print(f"FLOOR Kafka round trip (acks=all, idempotent): p50 {k['round_trip_ms']['p50']} ms, "
              f"p99 {k['round_trip_ms']['p99']} ms; produce ack p50 {k['produce_ack_ms']['p50']} ms")
        if cpu := k.get("cpu_one_at_a_time"):
            commit = k.get("offset_commit") or {}
            print(f"FLOOR CPU of one message one at a time: produce + fetch {cpu.get('client_ms_per_message')} ms in the "
                  f"client (aiokafka), {cpu.get('broker_ms_per_message', 'n/a')} ms in the broker (its JIT compiler "
                  f"{cpu.get('broker_jit_compiler_ms_per_message', 'n/a')} ms more, apart); one offset commit "
                  f"{commit.get('client_cpu_ms')} ms + {commit.get('broker_cpu_ms', 'n/a')} ms (compiler "
                  f"{commit.get('broker_jit_compiler_cpu_ms', 'n/a')} ms more) ({commit.get('wall_ms')} ms wall)")
        print(f"FLOOR PostgreSQL saga step commit, 1 connection: {pg['single_connection']['commits_per_second']}/s,"
              f" p50 {pg['single_connection']['commit_ms']['p50']} ms, p99 {pg['single_connection']['commit_ms']['p99']} ms")
        for c in pg["concurrent"]:
            print(f"  {c['connections']} connections: {c['commits_per_second']} commits/s, p50 {c['commit_ms']['p50']} ms,"
                  f" p99 {c['commit_ms']['p99']} ms")
        b = pg["batched_single_connection"]
        print(f"  {b['steps_per_commit']} steps per commit: {b['steps_per_second']} steps/s")
        print(f"FLOOR saga path = {HOPS} hops x round trip + {COMMITS} commits x commit: "
              f"p50 {bottom['saga_path_ms_p50']} ms, p99 {bottom['saga_path_ms_p99']} ms; commit-bound "
              f"{bottom['commit_bound_sagas_per_second_unbatched']} sagas/s unbatched")
    if fund:
        print(f"Processes per service: {fund['processes_per_service']}")
        warm = fund["warmup"]
        print(f"Warm-up ({warm['offers']} offers): p50 {_beside(warm['latency_ms'].get('p50'), bottom.get('saga_path_ms_p50'))},"
              f" max {warm['latency_ms'].get('max')} ms; {_stalls(warm['stalls'])}")
        if fund.get("idle_cores"):
            print(f"Idle, no load (the background loops): cores used {json.dumps(fund['idle_cores'])}")
        for lat in fund.get("latency", []):
            ms = lat["latency_ms"]
            print(f"Fund saga latency at {lat['offered_rate_per_second']:g} offers/s for {lat['seconds']} s, from the "
                  f"scheduled send: p50 {_beside(ms.get('p50'), bottom.get('saga_path_ms_p50'))}, "
                  f"p99 {_beside(ms.get('p99'), bottom.get('saga_path_ms_p99'))}, max {ms.get('max')} ms; "
                  f"load generator late by up to {lat['worst_send_lag_ms']} ms; {lat['outcomes']}; {_stalls(lat['stalls'])}")
            print(f"  {_tail(lat.get('tail'))}")
            print(f"  {_cpu(lat)}")
            _print_hops(lat)
        if traced := fund.get("hops_run"):
            ms = traced["latency_ms"]
            print(f"Hops, a separate run at {traced['offered_rate_per_second']:g} offers/s for {traced['seconds']} s with "
                  f"the hop tracer (one more consumer of every saga message: not a target's figure): p50 {ms.get('p50')}"
                  f" ms, p99 {ms.get('p99')} ms; {_stalls(traced['stalls'])}")
            print(f"  {_cpu(traced)}")
            _print_hops(traced)
        if burst := fund.get("burst"):
            print(f"Fund saga burst of {burst['burst']}: {burst['sagas_per_second']} sagas/s (last OfferSent after "
                  f"{burst['seconds_to_last_offer_sent']} s; commit-bound floor "
                  f"{bottom.get('commit_bound_sagas_per_second_unbatched')} sagas/s); {burst['outcomes']}")
            print(f"  {_cpu(burst)}")
            if caught := burst.get("notifications_caught_up"):
                print(f"  {_caught_up(caught)}")
        print(f"Sagas of the run by status (contracts): {fund.get('saga_statuses')}"
              f"{'' if set(fund.get('saga_statuses') or {}) <= {'completed'} else '  <- FINDING: not all completed'}")
        if thr := fund.get("throughput"):
            print(f"Fund saga throughput ({thr['in_flight_target']} in flight, {thr['seconds']:g} s): "
                  f"{thr['sagas_per_second_steady']} sagas/s steady (per-second min/max {thr['sagas_per_second_min_max']}),"
                  f" open at end {thr['open_at_end']}, all completed {thr['all_completed']} after {thr['drain_seconds']} s"
                  f" ({thr['outcomes']}); {_stalls(thr['stalls'])}")
            print(f"  {_cpu(thr)}")
    if capacity := result.get("p99_capacity"):
        held, missed = capacity["held_up_to_offers_per_second"], capacity["first_missed_at_offers_per_second"]
        print(f"Capacity: p99 <= {capacity['target_p99_ms']:g} ms "
              + (f"held up to {held:g} offers/s" if held is not None else "held at none of the rates run")
              + (f", first missed at {missed:g}/s" if missed is not None else ", at every rate run")
              + f" (p99 ms by rate: {capacity['p99_ms_by_rate']})")
    for point in result.get("scaling", []):
        print(f"Scaling: {point['processes_per_service']} process(es) per service: {point['sagas_per_second']} sagas/s,"
              f" platform CPU {point['platform_cpu_ms_per_saga']} ms/saga, p50 {point['latency_ms'].get('p50')} ms;"
              f" warm-up {_stalls(point['warmup_stalls'])}; sagas {point['saga_statuses']}")
    for name, value in result.get("ratios", {}).items():
        print(f"  {name}: {value}")
    for name, check in result.get("verdict", {}).items():
        if check.get("timed_out"):
            detail = f" (did not complete: {check['timed_out']})"
        else:
            detail = f" (measured {check['measured']}, off by x{check['off_by_factor']})" if "measured" in check else ""
        print(f"  [{'MET' if check['met'] else 'MISSED'}] {name}{detail}")
    if result.get("bonus_batch") is not None:
        print("Bonus batch:", json.dumps(result["bonus_batch"], default=str)[:2000])
        if machine := (result["bonus_batch"].get("batch") or {}).get("machine"):
            print(f"  the machine {machine['machine_busy_fraction']:.0%} busy over the batch{_steal(machine)}, "
                  f"{machine['total_cpu_ms_per_bonus']} ms of its CPU a bonus: " + ", ".join(
                      f"{group} {share:.0%}" for group, share in sorted(machine["share"].items(), key=lambda kv: -kv[1])))


def save(result: dict, results: Path = RESULTS, latest: bool = True) -> Path:
    """Every run kept under its start time; latest.json is a copy of the last (not where each run has a directory
    of its own, as under bench/results/pairs)."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{result['started_at'].replace(':', '').replace('-', '')}.json"
    text = json.dumps(result, indent=2, default=str) + "\n"
    path.write_text(text)
    if latest:
        (results / "latest.json").write_text(text)
    return path
