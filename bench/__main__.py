"""`python -m bench`: the benchmark of issue 2, one run, one JSON result.

Against the Kafka of KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092) and the PostgreSQL of
POSTGRES_URL (default: `deploy/local/postgres.sh url`). In order:
1. raw limits of this machine (Kafka round trip, PostgreSQL commits), before any service runs;
2. contracts, billing and escrow as separate processes on fresh databases (prefix BENCH_DB_PREFIX,
   default bench_; HTTP ports BENCH_PORT_BASE+1.., default 28001..);
3. fund sagas: latency at a fixed offered load, then throughput at saturation;
4. the bonus-batch benchmark, when bench/bonus_batch.py provides one (see run_bonus below);
5. bench/results/<UTC timestamp>.json and bench/results/latest.json, and the ratios printed.
"""

import argparse
import asyncio
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import asyncpg

from tests.infra import ensure_topics
from tests.support.groups import GroupsTaken, refuse_shared_groups, wait_for_groups

from . import fund_saga, raw_limits
from .report import all_sent, ratios, report, save, verdict
from .services import SAGA_SERVICES, BenchPlatform, default_log_dir, metric_deltas
from .stats import CpuSnapshot, load_average, pid_listening_on

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=("fund", "bonus", "all"), default="all", help="which benchmarks to run")
    p.add_argument("--duration", type=float, default=60, help="seconds of saturating load (throughput)")
    p.add_argument("--warmup", type=float, default=10, help="first seconds of the throughput run left out of the steady window")
    p.add_argument("--in-flight", type=int, default=500, help="sagas kept open during the throughput run")
    p.add_argument("--rate", type=float, default=50, help="offered load (offers/s) of the latency run")
    p.add_argument("--latency-duration", type=float, default=30, help="seconds of the latency run")
    p.add_argument("--pairs", type=int, default=50, help="client/freelancer pairs registered before the offers")
    p.add_argument("--raw-samples", type=int, default=500, help="Kafka round trips measured one by one")
    p.add_argument("--pg-seconds", type=float, default=5, help="seconds per PostgreSQL commit measurement")
    p.add_argument("--pg-concurrency", default="8,32", help="concurrent connections measured, comma separated")
    p.add_argument("--skip-raw", action="store_true", help="leave out the raw limits (tuning runs)")
    p.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment of the service processes (e.g. CONSUMER_MAX_RECORDS=500)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="run the services under a profiler; a summary of each goes to DIR/<service>.txt")
    p.add_argument("--profiler", choices=("cpu", "wall"), default="cpu",
                   help="cpu: cProfile timed by CPU time (right on a loaded machine); wall: pyinstrument")
    p.add_argument("--no-save", action="store_true", help="print only, write no result file")
    p.add_argument("--label", default="", help="a note stored with the result")
    return p.parse_args(argv)


def infra() -> tuple[str, str]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    postgres = os.environ.get("POSTGRES_URL") or subprocess.run(
        [str(ROOT / "deploy/local/postgres.sh"), "url"], capture_output=True, text=True, check=True).stdout.strip()
    return kafka, postgres.rstrip("/")


def machine() -> dict:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    git = {"git_commit": _git("rev-parse", "--short", "HEAD"),
           "git_uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no"))}
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_total": meminfo.get("MemTotal", "").strip(),
            "kernel": platform.release(), "python": platform.python_version(), **git}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def scratch_database(postgres_url: str, name: str) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(postgres_url) + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{asyncpg_dsn(postgres_url)}/{name}"


async def measure_raw(args, kafka: str, postgres: str, prefix: str) -> dict:
    print(f"raw limits: Kafka round trip x{args.raw_samples} ...", flush=True)
    kafka_rt = await raw_limits.kafka_round_trip(kafka, args.raw_samples)
    print("raw limits: PostgreSQL commits ...", flush=True)
    dsn = await scratch_database(postgres, f"{prefix}raw")
    concurrency = tuple(int(n) for n in args.pg_concurrency.split(",") if n)
    pg = await raw_limits.postgres_commits(dsn, args.pg_seconds, concurrency)
    return {"kafka": kafka_rt, "postgres": pg, "load_average": load_average()}


def kafka_broker_pid(kafka: str) -> int | None:
    """The local broker's process, when the first bootstrap server is on this machine."""
    host, _, port = kafka.split(",")[0].rpartition(":")
    return pid_listening_on(int(port), "java") if host in ("127.0.0.1", "localhost", "") else None


async def phase(name: str, bench: BenchPlatform, work, kafka_pid: int | None) -> dict:
    """Runs one load phase and adds what the services and the machine did meanwhile."""
    named = {**bench.pids(), "bench (this process)": os.getpid()}
    if kafka_pid:
        named["kafka broker"] = kafka_pid
    metrics_before, began = await bench.metrics(), time.perf_counter()
    cpu_before = CpuSnapshot.take(named, bench.prefix)
    print(f"fund saga: {name} ...", flush=True)
    result = await work
    wall = time.perf_counter() - began
    result["cpu"] = CpuSnapshot.take(named, bench.prefix).since(cpu_before, wall)
    completed = result["outcomes"].get("OfferSent", 0)
    if completed:
        result["cpu_ms_per_saga"] = {g: round(s / completed * 1000, 2) for g, s in result["cpu"]["cpu_seconds"].items()}
    result["services"] = metric_deltas(metrics_before, await bench.metrics())
    result["load_average"] = load_average()
    return result


async def run_fund(args, kafka: str, postgres: str, prefix: str, port_base: int) -> dict:
    env = dict(item.split("=", 1) for item in args.service_env)
    bench = BenchPlatform(kafka, postgres, prefix, port_base, default_log_dir(), env=env, profile_dir=args.profile,
                          profiler=args.profiler)
    print(f"starting {', '.join(SAGA_SERVICES)} (databases {prefix}*, logs {bench.log_dir}) ...", flush=True)
    tracker = fund_saga.Tracker(kafka)
    try:
        await ensure_topics(kafka)
        await bench.start()  # refuses first when another platform's services are in the groups
        await wait_for_groups(kafka, SAGA_SERVICES)
        await refuse_shared_groups(kafka, SAGA_SERVICES, own=1, who="fund saga benchmark")  # none joined meanwhile
        await tracker.start()
        started = time.perf_counter()
        parties = await fund_saga.register_parties(tracker, args.pairs)
        setup = {"pairs": args.pairs, "seconds": round(time.perf_counter() - started, 2)}
        warm = await fund_saga.offered_load(tracker, parties, args.rate, 5)  # connections, caches, JIT-free warm-up
        broker = kafka_broker_pid(kafka)
        latency = await phase("latency", bench, fund_saga.offered_load(
            tracker, parties, args.rate, args.latency_duration, trace_hops=True), broker)
        throughput = await phase("throughput", bench, fund_saga.saturating_load(
            tracker, parties, args.in_flight, args.duration, args.warmup), broker)
        ledger = await bench.get_json("escrow", "/ledger/check")
        return {"setup": setup, "warmup": {k: warm[k] for k in ("offers", "all_completed", "latency_ms")},
                "latency": latency, "throughput": throughput, "ledger_check_ok": ledger.get("ok"),
                "service_env": env}
    finally:
        await tracker.stop()
        bench.stop()


async def run_bonus(args, kafka: str, postgres: str, prefix: str, port_base: int) -> dict | None:
    """The hook for bench/bonus_batch.py: its `run` gets the keyword arguments it names among
    kafka, postgres_url, prefix, port_base, log_dir and args, may be async, and returns a JSON-able dict."""
    try:
        from . import bonus_batch
    except ModuleNotFoundError as missing:
        if missing.name != f"{__package__}.bonus_batch":
            raise
        print("bonus batch: bench/bonus_batch.py not there yet, skipped", flush=True)
        return None
    offered = {"kafka": kafka, "postgres_url": postgres, "prefix": prefix, "port_base": port_base,
               "log_dir": default_log_dir(), "profile_dir": args.profile and args.profile / "bonus", "args": args}
    accepted = inspect.signature(bonus_batch.run).parameters
    result = bonus_batch.run(**{k: v for k, v in offered.items() if k in accepted})
    return await result if inspect.isawaitable(result) else result


def groups_needed(only: str) -> tuple[str, ...]:
    """The consumer groups of the services each benchmark runs."""
    fund = SAGA_SERVICES if only in ("fund", "all") else ()
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
    await ensure_topics(kafka)
    await refuse_shared_groups(kafka, groups_needed(args.only), who="bench")
    prefix = os.environ.get("BENCH_DB_PREFIX", "bench_")
    port_base = int(os.environ.get("BENCH_PORT_BASE", "28000"))
    result: dict = {"started_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "label": args.label,
                    "settings": {k: v for k, v in vars(args).items()}, "machine": machine(),
                    "infra": {"kafka": kafka, "postgres": postgres.split("@")[-1]},
                    "load_average_at_start": load_average()}
    if args.only in ("fund", "all"):
        result["raw_limits"] = None if args.skip_raw else await measure_raw(args, kafka, postgres, prefix)
        result["fund_saga"] = await run_fund(args, kafka, postgres, prefix, port_base)
    if args.only in ("bonus", "all"):
        result["bonus_batch"] = await run_bonus(args, kafka, postgres, prefix, port_base)
    result["ratios"] = ratios(result.get("raw_limits"), result.get("fund_saga"))
    result["verdict"] = verdict(result.get("fund_saga"))
    result["load_average_at_end"] = load_average()
    report(result)
    if not args.no_save:
        print(f"\nresult: {save(result).relative_to(ROOT)} (and bench/results/latest.json)")
    fund = result.get("fund_saga")
    return 0 if not fund or (all_sent(fund) and fund.get("ledger_check_ok")) else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(sys.argv[1:])))
    except GroupsTaken as taken:
        sys.exit(str(taken))  # the one-line reason, exit status 1
