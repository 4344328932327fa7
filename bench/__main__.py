"""`python -m bench`: the platform's benchmark (issues 2 and 10), one run, one JSON result.

Against the Kafka of KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092) and the PostgreSQL of
POSTGRES_URL (default: `deploy/local/postgres.sh url`). In order:
1. raw limits of this machine (Kafka round trip, PostgreSQL commits), before any service runs: the floor
   that every figure is printed beside;
2. the four services (contracts, billing, escrow, notifications) as separate processes on fresh databases
   (prefix BENCH_DB_PREFIX, default bench_; HTTP ports BENCH_PORT_BASE+1.., default 28001..);
3. fund sagas: a warm-up (its stalls reported, not hidden), latency at each offered load of --rates measured
   from the scheduled send time, a burst, optionally a closed-loop throughput run; CPU per saga of every
   process, the load generator's (this process) apart;
4. optionally (--scale 1,2,4) the burst again with 1, 2 and 4 processes per service: the scaling curve;
5. the bonus-batch benchmark (bench/bonus_batch.py);
6. bench/results/<UTC timestamp>.json and bench/results/latest.json (every run kept), the figures printed
   beside the floor of the same run, and the verdict against the targets.
"""

import argparse
import asyncio
import inspect
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
from platform_runtime.priority import NICEST
from platform_runtime.relay import asyncpg_dsn

from tests.infra import ensure_topics, with_local_superuser_password
from tests.support.groups import GroupsTaken, refuse_shared_groups, wait_for_groups
from tests.support.probe_service import scratch_database

from . import catch_up, database_work, fund_saga, raw_limits
from .calibration import cpu_calibration
from .principals import super_user
from .report import RESULTS, all_sent, floor, p99_capacity, ratios, report, save, verdict
from .services import BENCH_SERVICES, SMTP_SINK, BenchPlatform, default_log_dir, metric_deltas
from .stats import (
    ENDED_POSTGRES, GATEWAY_DATABASE, LOAD_GENERATOR, OTHER_POSTGRES, CpuSnapshot, counted, kafka_broker_pid,
    load_average,
)

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=("fund", "bonus", "all"), default="all", help="which benchmarks to run")
    p.add_argument("--rates", default="20,100", help="offered loads (offers/s) of the latency runs, comma separated")
    p.add_argument("--burst", type=int, default=5000, help="offers sent at once (sagas/s from first send to last OfferSent)")
    p.add_argument("--scale", default="", metavar="N,N,..",
                   help="the scaling curve: the burst again with N processes per service for each N (e.g. 1,2,4)")
    p.add_argument("--scale-burst", type=int, default=2000, help="offers per burst of the scaling curve")
    p.add_argument("--duration", type=float, default=0,
                   help="seconds of closed-loop saturating load (throughput with --in-flight open sagas); 0: skipped")
    p.add_argument("--warmup", type=float, default=10, help="first seconds of the throughput run left out of the steady window")
    p.add_argument("--drain-timeout", type=float, default=300,
                   help="seconds a phase waits for its last outcomes (a saga that ends needs_attention never sends one)")
    p.add_argument("--in-flight", type=int, default=500, help="sagas kept open during the throughput run")
    p.add_argument("--latency-duration", type=float, default=30, help="seconds of each latency run")
    p.add_argument("--hops-seconds", type=float, default=15,
                   help="seconds of a separate traced run at the first rate, for the time per hop (0: none); the "
                        "targets' latency runs are never traced")
    p.add_argument("--idle-seconds", type=float, default=10,
                   help="seconds with no load after the warm-up: the background loops' CPU, subtracted per phase")
    p.add_argument("--warmup-seconds", type=float, default=5, help="seconds of the warm-up at the first rate")
    p.add_argument("--pairs", type=int, default=50, help="client/freelancer pairs registered before the offers")
    p.add_argument("--raw-samples", type=int, default=500, help="Kafka round trips measured one by one")
    p.add_argument("--pg-seconds", type=float, default=5, help="seconds per PostgreSQL commit measurement")
    p.add_argument("--pg-concurrency", default="8,32", help="concurrent connections measured, comma separated")
    p.add_argument("--skip-raw", action="store_true", help="leave out the raw limits (tuning runs)")
    p.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment of the service processes (e.g. CONSUMER_MAX_RECORDS=500); "
                        "SERVICE:KEY=VALUE for one service alone (e.g. billing:CONSUMER_FETCH_MIN_BYTES=1)")
    p.add_argument("--processes", action="append", default=[], metavar="SERVICE=N",
                   help="processes of that service in the targets' runs (default 1 each; the scaling curve sets its own)")
    p.add_argument("--sink-niceness", type=int, default=NICEST, choices=range(NICEST + 1), metavar="0-19",
                   help="niceness of the mail stand-in (default 19: it takes only what the platform leaves, as a "
                        "mail server on other machines would; 0 to compare)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="run the services under a profiler; a summary of each goes to DIR/<service>.txt")
    p.add_argument("--profiler", choices=("cpu", "wall"), default="cpu",
                   help="cpu: cProfile timed by CPU time (right on a loaded machine); wall: pyinstrument")
    p.add_argument("--bonuses", type=int, default=100_000, help="bonuses in the bonus batch benchmark's batch")
    p.add_argument("--clients", type=int, default=10_000, help="clients those bonuses are spread over")
    p.add_argument("--no-save", action="store_true", help="print only, write no result file")
    p.add_argument("--results-dir", type=Path,
                   help="a directory of this run's own for its result, with no latest.json (default: bench/results, "
                        "with latest.json); `python -m bench.pairs` keeps each of its runs apart so")
    p.add_argument("--label", default="", help="a note stored with the result")
    return p.parse_args(argv)


def infra() -> tuple[str, str]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    postgres = with_local_superuser_password(os.environ.get("POSTGRES_URL")) or subprocess.run(
        [str(ROOT / "deploy/local/postgres.sh"), "url"], capture_output=True, text=True, check=True).stdout.strip()
    return kafka, postgres.rstrip("/")


def machine() -> dict:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    git = {"git_commit": _git("rev-parse", "HEAD"), "git_branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
           "git_uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no"))}
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_total": meminfo.get("MemTotal", "").strip(),
            "kernel": platform.release(), "python": platform.python_version(),
            # which build ran the services (theirs is this one): builds of one version differ (README, thirty-fourth
            # step: Debian's, with PGO and LTO, ran a fixed work in 0.61-0.72 of pyenv's time, contracts about the same)
            "python_interpreter": os.path.realpath(sys.executable), **git}


def disk_free_gib() -> float:
    """Free space where the local broker and PostgreSQL keep their data: a run that fills the disk stops the broker
    (its event topics keep what every run wrote, within the local broker's bound: deploy/local/kafka/config)."""
    work = Path(os.environ.get("ESCROW_WORK", "/var/tmp/escrow-platform"))
    return round(shutil.disk_usage(work if work.exists() else "/").free / 2**30, 1)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


async def measure_raw(args, kafka: str, postgres: str, prefix: str) -> dict:
    print(f"raw limits: Kafka round trip x{args.raw_samples} ...", flush=True)
    kafka_rt = await raw_limits.kafka_round_trip(kafka, args.raw_samples, broker_pid=kafka_broker_pid(kafka))
    print("raw limits: PostgreSQL commits ...", flush=True)
    dsn = asyncpg_dsn(await scratch_database(postgres, f"{prefix}raw"))
    concurrency = tuple(int(n) for n in args.pg_concurrency.split(",") if n)
    pg = await raw_limits.postgres_commits(dsn, args.pg_seconds, concurrency)
    return {"kafka": kafka_rt, "postgres": pg, "load_average": load_average()}


NOT_THE_PLATFORM = (LOAD_GENERATOR, SMTP_SINK, GATEWAY_DATABASE, OTHER_POSTGRES, ENDED_POSTGRES)


async def phase(name: str, bench: BenchPlatform, work, kafka_pid: int | None, idle: dict | None = None,
                catch_up: bool = False) -> dict:
    """Runs one load phase and adds what the services and the machine did meanwhile. idle: the cores each group
    used with no load (idle_phase); subtracted over the phase's wall time, it gives the CPU per saga net of the
    platform's background loops (polls, heartbeats, metrics), which a slow phase would otherwise pile onto it."""
    named = counted(bench.pids(), kafka_pid)
    work_dsn = asyncpg_dsn(bench.postgres_url) + "/postgres"
    work_before = await database_work.settled_snapshot(work_dsn, bench.prefix)
    metrics_before, began = await bench.metrics(), time.perf_counter()
    cpu_before = CpuSnapshot.take(named, bench.prefix)
    print(f"fund saga: {name} ...", flush=True)
    result = await work
    wall = time.perf_counter() - began
    result["cpu"] = CpuSnapshot.take(named, bench.prefix).since(cpu_before, wall)
    completed = result["outcomes"].get("OfferSent", 0)
    if catch_up and completed:
        result["notifications_caught_up"] = await notifications_caught_up(bench, named, cpu_before, began, completed)
    if completed:
        per_saga = {g: round(s / completed * 1000, 2) for g, s in result["cpu"]["cpu_seconds"].items()}
        result["cpu_ms_per_saga"] = per_saga
        # The platform: its services, their databases' backends and the broker; not the load generator, nor
        # other people's databases on a shared server.
        result["platform_cpu_ms_per_saga"] = round(sum(
            ms for g, ms in per_saga.items() if g not in NOT_THE_PLATFORM), 2)
        result["load_generator_cpu_ms_per_saga"] = per_saga.get(LOAD_GENERATOR)
        if idle:
            net = {g: round(max(s - idle.get(g, 0.0) * wall, 0.0) / completed * 1000, 2)
                   for g, s in result["cpu"]["cpu_seconds"].items()}
            result["platform_cpu_ms_per_saga_net_of_idle"] = round(sum(
                ms for g, ms in net.items() if g not in NOT_THE_PLATFORM), 2)
            result["cpu_ms_per_saga_net_of_idle"] = net
        work_after = await database_work.settled_snapshot(work_dsn, bench.prefix)
        result["database_work_per_saga"] = database_work.per_saga(work_before, work_after, completed, bench.services)
        result["top_statements"] = database_work.top_statements(work_before, work_after, completed, bench.services)
    result["services"] = metric_deltas(metrics_before, await bench.metrics())
    result["load_average"] = load_average()
    return result


async def notifications_caught_up(bench: BenchPlatform, named, cpu_before, began: float, completed: int) -> dict:
    """How long after the window notifications caught up, and the platform's CPU a saga from the phase's start to
    then: the window's figure with the work notifications left after it (bench/catch_up.py)."""
    seconds = await catch_up.caught_up(asyncpg_dsn(bench.platform.database_url("contracts")),
                                       asyncpg_dsn(bench.platform.database_url("notifications")), deadline=120)
    if seconds is None:
        return {"seconds_after_the_window": None}
    cpu = CpuSnapshot.take(named, bench.prefix).since(cpu_before, time.perf_counter() - began)
    per_saga = {g: round(s / completed * 1000, 2) for g, s in cpu["cpu_seconds"].items()}
    return {"seconds_after_the_window": seconds, "cpu_ms_per_saga": per_saga,
            "platform_cpu_ms_per_saga": round(sum(ms for g, ms in per_saga.items() if g not in NOT_THE_PLATFORM), 2)}


async def idle_phase(bench: BenchPlatform, kafka_pid: int | None, seconds: float) -> dict[str, float]:
    """The cores each group uses with the platform up and no load: its background loops."""
    named = counted(bench.pids(), kafka_pid)
    print(f"fund saga: {seconds:g} s idle (the background loops' CPU) ...", flush=True)
    before, began = CpuSnapshot.take(named, bench.prefix), time.perf_counter()
    await asyncio.sleep(seconds)
    used = CpuSnapshot.take(named, bench.prefix).since(before, time.perf_counter() - began)
    return used["cores_used"]


async def run_fund(args, kafka: str, postgres: str, prefix: str, port_base: int, instances: int = 1,
                   scaling_only: bool = False) -> dict:
    """One platform (`instances` processes per service) on fresh databases, and the fund-saga phases on it.
    scaling_only: a warm-up and the burst of the scaling curve, nothing else."""
    env = dict(item.split("=", 1) for item in args.service_env)
    counts = {} if scaling_only else {s: int(n) for s, n in (item.split("=", 1) for item in args.processes)}
    bench = BenchPlatform(kafka, postgres, prefix, port_base, default_log_dir(), env=env,
                          profile_dir=None if scaling_only else args.profile, profiler=args.profiler,
                          instances=instances, processes=counts, sink_niceness=args.sink_niceness)
    started_as = ", ".join(f"{bench.count(s)} x {s}" for s in bench.services)
    print(f"starting {started_as} (databases {prefix}*, logs {bench.log_dir}) ...", flush=True)
    tracker = fund_saga.Tracker(kafka)
    rates = [float(r) for r in args.rates.split(",") if r]
    try:
        await ensure_topics(super_user(kafka))
        await bench.start()  # refuses first when another platform's services are in the groups
        await wait_for_groups(super_user(kafka), bench.services)
        await refuse_shared_groups(super_user(kafka), bench.services, own=max(map(bench.count, bench.services)),
                                   who="fund saga benchmark")  # none joined meanwhile
        await tracker.start()
        started = time.perf_counter()
        parties = await fund_saga.register_parties(tracker, args.pairs)
        setup = {"pairs": args.pairs, "seconds": round(time.perf_counter() - started, 2)}
        # The warm-up fills connection pools and caches; its figures are kept, and its stalls are findings.
        warm = await fund_saga.offered_load(tracker, parties, rates[0] if rates else 20, args.warmup_seconds,
                                            drain_timeout=args.drain_timeout)
        result: dict = {"processes_per_service": {s: bench.count(s) for s in bench.services}
                        if counts else instances, "setup": setup, "service_env": env,
                        "warmup": {k: warm[k] for k in ("offers", "all_completed", "latency_ms", "stalls")}}
        broker = kafka_broker_pid(kafka)
        idle = result["idle_cores"] = await idle_phase(bench, broker, args.idle_seconds) if args.idle_seconds else {}
        if scaling_only:
            result["burst"] = await phase("burst", bench, fund_saga.burst_load(tracker, parties, args.scale_burst,
                                                                                   args.drain_timeout),
                                          broker, idle)
        else:
            # The targets' runs carry no tracer: its consumer reads every saga message, and on two cores that
            # load is the platform's latency too (issue 10, eleventh step). The hops come from a run of their own.
            result["latency"] = [await phase(f"latency at {rate:g}/s", bench, fund_saga.offered_load(
                tracker, parties, rate, args.latency_duration, args.drain_timeout), broker, idle)
                for rate in rates]
            if rates and args.hops_seconds:
                result["hops_run"] = await phase(f"hops at {rates[0]:g}/s (traced)", bench, fund_saga.offered_load(
                    tracker, parties, rates[0], args.hops_seconds, args.drain_timeout, trace_hops=True), broker, idle)
            if args.burst:
                result["burst"] = await phase(f"burst of {args.burst}", bench,
                                              fund_saga.burst_load(tracker, parties, args.burst, args.drain_timeout), broker, idle,
                                              catch_up=True)
            if args.duration:
                result["throughput"] = await phase("throughput", bench, fund_saga.saturating_load(
                    tracker, parties, args.in_flight, args.duration, args.warmup, args.drain_timeout), broker,
                    idle)
        result["ledger_check_ok"] = (await bench.get_json("escrow", "/ledger/check")).get("ok")
        result["saga_statuses"] = await saga_statuses(postgres, prefix)
        return result
    finally:
        await tracker.stop()
        bench.stop()


async def saga_statuses(postgres: str, prefix: str) -> dict[str, int]:
    """How contracts' sagas of this run ended: any not `completed` (needs_attention after unanswered re-sends,
    still running) is a finding."""
    conn = await asyncpg.connect(f"{asyncpg_dsn(postgres)}/{prefix}contracts")
    try:
        return {r["status"]: r["n"] for r in await conn.fetch("SELECT status, count(*) AS n FROM sagas GROUP BY status")}
    finally:
        await conn.close()


async def run_scaling(args, kafka: str, postgres: str, prefix: str, port_base: int) -> list[dict]:
    """The burst with 1, 2, 4 ... processes per service, each on a fresh platform."""
    curve = []
    for n in (int(x) for x in args.scale.split(",") if x):
        print(f"scaling curve: {n} process(es) per service", flush=True)
        run = await run_fund(args, kafka, postgres, prefix, port_base, instances=n, scaling_only=True)
        burst = run["burst"]
        curve.append({"processes_per_service": n, "sagas_per_second": burst["sagas_per_second"],
                      "platform_cpu_ms_per_saga": burst.get("platform_cpu_ms_per_saga"),
                      "cores_used": burst["cpu"]["cores_used"], "latency_ms": burst["latency_ms"],
                      "all_completed": burst["all_completed"], "outcomes": burst["outcomes"],
                      "warmup_stalls": run["warmup"]["stalls"], "ledger_check_ok": run["ledger_check_ok"],
                      "saga_statuses": run["saga_statuses"]})
    return curve


async def run_bonus(args, kafka: str, postgres: str, prefix: str, port_base: int) -> dict | None:
    """The hook for bench/bonus_batch.py: its `run` gets the keyword arguments it names among
    kafka, postgres_url, prefix, port_base, log_dir, bonuses, clients and args, may be async, and returns a JSON-able dict."""
    try:
        from . import bonus_batch
    except ModuleNotFoundError as missing:
        if missing.name != f"{__package__}.bonus_batch":
            raise
        print("bonus batch: bench/bonus_batch.py not there yet, skipped", flush=True)
        return None
    offered = {"kafka": kafka, "postgres_url": postgres, "prefix": prefix, "port_base": port_base,
               "log_dir": default_log_dir(), "profile_dir": args.profile and args.profile / "bonus", "args": args,
               "bonuses": args.bonuses, "clients": args.clients,
               "service_env": dict(item.split("=", 1) for item in args.service_env)}
    accepted = inspect.signature(bonus_batch.run).parameters
    result = bonus_batch.run(**{k: v for k, v in offered.items() if k in accepted})
    return await result if inspect.isawaitable(result) else result


def groups_needed(only: str) -> tuple[str, ...]:
    """The consumer groups of the services each benchmark runs."""
    fund = BENCH_SERVICES if only in ("fund", "all") else ()
    bonus = bonus_batch_services() if only in ("bonus", "all") else ()
    return tuple(dict.fromkeys((*fund, *bonus)))


def bonus_batch_services() -> tuple[str, ...]:
    try:
        from .bonus_batch import SERVICES
    except ModuleNotFoundError:
        return ()
    return SERVICES


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    kafka, postgres = infra()
    # Before anything, the raw limits included: another platform in our groups would answer our commands.
    await ensure_topics(super_user(kafka))
    await refuse_shared_groups(super_user(kafka), groups_needed(args.only), who="bench")
    prefix = os.environ.get("BENCH_DB_PREFIX", "bench_")
    port_base = int(os.environ.get("BENCH_PORT_BASE", "28000"))
    result: dict = {"started_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "label": args.label,
                    "settings": dict(vars(args)), "machine": machine(),
                    "infra": {"kafka": kafka, "postgres": postgres.split("@")[-1]},
                    "load_average_at_start": load_average(), "disk_free_gib_at_start": disk_free_gib(),
                    "cpu_calibration_at_start": cpu_calibration()}
    if args.only in ("fund", "all"):
        result["raw_limits"] = None if args.skip_raw else await measure_raw(args, kafka, postgres, prefix)
        result["fund_saga"] = await run_fund(args, kafka, postgres, prefix, port_base)
        if args.scale:
            result["scaling"] = await run_scaling(args, kafka, postgres, prefix, port_base)
    if args.only in ("bonus", "all"):
        result["bonus_batch"] = await run_bonus(args, kafka, postgres, prefix, port_base)
    result["floor"] = floor(result.get("raw_limits"))
    result["ratios"] = ratios(result.get("raw_limits"), result.get("fund_saga"))
    result["p99_capacity"] = p99_capacity(result.get("fund_saga"))
    result["verdict"] = verdict(result.get("fund_saga"), result.get("floor"), result.get("bonus_batch"))
    result["load_average_at_end"] = load_average()
    result["disk_free_gib_at_end"] = disk_free_gib()
    result["cpu_calibration_at_end"] = cpu_calibration()
    # first: a printing error must not lose the run
    saved = None if args.no_save else save(result, args.results_dir or RESULTS, latest=not args.results_dir)
    report(result)
    if saved:
        shown = saved.relative_to(ROOT) if saved.is_relative_to(ROOT) else saved
        print(f"\nresult: {shown}" + ("" if args.results_dir else f" (and {shown.parent / 'latest.json'})"))
    fund = result.get("fund_saga")
    scaling_ok = all(point["all_completed"] and point["ledger_check_ok"] for point in result.get("scaling", []))
    return 0 if (not fund or (all_sent(fund) and fund.get("ledger_check_ok"))) and scaling_ok else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(sys.argv[1:])))
    except GroupsTaken as taken:
        sys.exit(str(taken))  # the one-line reason, exit status 1
