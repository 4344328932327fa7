"""The daily bonus batch benchmark (issue 4): 100,000 bonuses across 10,000 clients in one batch.

Entry points (for bench/__main__.py, or on its own):
- `await run(kafka=..., postgres_url=..., prefix=..., port_base=..., log_dir=...)` -> a JSON-able dict;
  every argument has a default, so `run()` alone works too. It starts billing and escrow as processes of
  their own (databases `<prefix>bonus_<service>`, HTTP ports port_base+12 and +13) and stops them. No other
  billing or escrow process may consume from the same broker meanwhile (the consumer groups are the same):
  the fund saga benchmark must have stopped its services, and a `make up` platform must be down.
- `python -m bench.bonus_batch [--bonuses N --clients N]` prints the dict.

What it does: seeds pending bonuses and the clients' primary cards (tok_visa) straight into billing's
database, then sends RunBonusBatch and measures:
- the time from the command to its BonusBatchCompleted on Kafka (and to the batch's `completed` in billing);
- billing's peak memory (VmHWM of /proc/<pid>/status) after a 10x smaller warm-up batch and after the big one:
  the difference is what 10x more bonuses cost (the batch streams in chunks, so it should stay flat);
- a re-run of the same day: its time and that it creates no charge at the gateway;
- the figures (bonuses, paid, totals) against what was seeded, and escrow's ledger check.
Targets: the batch in at most 60 s, the re-run in at most 10% of that, memory flat in the number of bonuses.
"""

import argparse
import asyncio
import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2
from platform_runtime.credentials import Credentials

from platform_schemas import new_envelope
from platform_schemas.commands.billing import RunBonusBatch
from platform_schemas.topics import BILLING_ADMIN_COMMANDS, BILLING_EVENTS
from tests.infra import with_local_superuser_password
from tests.support import processes
from tests.support.groups import GroupsTaken, refuse_shared_groups, wait_for_groups
from tests.support.processes import Platform

from .principals import as_, super_user
from .report import bonus_target_seconds
from .stats import CpuSnapshot, counted, kafka_broker_pid


SERVICES = ("billing", "escrow")
CURRENCIES_OF_EVERY_FOURTH_CLIENT = ("USD", "EUR")  # the others give bonuses in USD only


@functools.cache
def admin_headers() -> dict[str, str]:
    """The benchmark reads the batch's progress and the ledger check as the operators' principal."""
    return Credentials.local("admin").http_headers()


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def seed(billing_dsn: str, business_date: date, given_at: datetime, bonuses: int, clients: int,
               tag: str) -> dict:
    """Pending bonuses as billing learns them from BonusGiven, and each client's primary card."""
    rng = random.Random(f"{tag}-{bonuses}-{clients}")
    conn = await asyncpg.connect(billing_dsn)
    totals: dict[str, int] = {}
    try:
        await conn.copy_records_to_table("billing_methods", columns=[
            "billing_method_id", "account_id", "kind", "token", "is_primary", "added_at"], records=[
            (f"{tag}-card-{c}", f"{tag}-client-{c}", "card", "tok_visa", True, given_at) for c in range(clients)])
        rows = []
        for n in range(bonuses):
            c = n % clients
            currency = CURRENCIES_OF_EVERY_FOURTH_CLIENT[(n // clients) % 2] if c % 4 == 0 else "USD"
            amount = rng.randint(100, 50_000)
            totals[currency] = totals.get(currency, 0) + amount
            rows.append((f"{tag}-bonus-{n}", f"{tag}-contract-{c}-{n % 3}", f"{tag}-client-{c}",
                         f"{tag}-freelancer-{(c * 7 + n) % max(clients // 2, 1)}", amount, currency, business_date,
                         given_at, "pending"))
        await conn.copy_records_to_table("bonuses", columns=[
            "bonus_id", "contract_id", "client_id", "freelancer_id", "amount", "currency", "business_date",
            "given_at", "status"], records=rows)
    finally:
        await conn.close()
    return totals


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


async def gateway_charges(gateway_dsn: str, business_date: date) -> tuple[int, int]:
    conn = await asyncpg.connect(gateway_dsn)
    try:
        row = await conn.fetchrow("SELECT count(*) AS n, coalesce(sum(amount), 0) AS total FROM sim_charges "
                                  "WHERE idempotency_key LIKE $1", f"bonus-batch-{business_date}:%")
    finally:
        await conn.close()
    return row["n"], row["total"]


class BatchTimedOut(TimeoutError):
    """The batch did not complete in the time allowed: a finding, reported with its progress, not a crash."""

    def __init__(self, message: str, progress: list | None = None) -> None:
        super().__init__(message)
        self.progress = progress or []


def machine_cpu(used: dict, bonuses: int) -> dict:
    """The machine's CPU over the batch by group (CpuSnapshot.since), each group's share of it and its CPU per
    bonus: where the batch's time goes when the machine is full, the stand-in and the load generator named apart."""
    seconds = used["cpu_seconds"]
    total = sum(seconds.values())
    return {"machine_busy_fraction": used["machine_busy_fraction"],
            "machine_steal_fraction": used.get("machine_steal_fraction"), "cpu_seconds": seconds,
            "share": {group: round(s / total, 3) for group, s in seconds.items()} if total > 0 else {},
            "cpu_ms_per_bonus": {group: round(s / bonuses * 1000, 3) for group, s in seconds.items()},
            "total_cpu_ms_per_bonus": round(total / bonuses * 1000, 3)}


def time_allowed(bonuses: int) -> float:
    """Ten times the batch's target, at least 10 minutes."""
    return max(600.0, 10 * bonus_target_seconds(bonuses))


class BatchWatcher:
    """Follows the one billing.events partition that carries a batch's messages (its key), bytes only."""

    def __init__(self, kafka: str) -> None:
        self.kafka = kafka

    async def start(self, business_date: date) -> None:
        self.consumer = AIOKafkaConsumer(**as_(self.kafka, "integrator").kafka_options(), enable_auto_commit=False)
        await self.consumer.start()
        partitions = sorted(self.consumer.partitions_for_topic(BILLING_EVENTS) or range(12))
        key = f"bonus-batch-{business_date}".encode()
        self.partition = TopicPartition(BILLING_EVENTS, partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)])
        self.consumer.assign([self.partition])
        await self.consumer.seek_to_end(self.partition)
        await self.consumer.position(self.partition)

    async def completed(self, command_id: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        needle = f'"correlationid":"{command_id}"'.encode()
        while time.monotonic() < deadline:
            for records in (await self.consumer.getmany(self.partition, timeout_ms=200)).values():
                for record in records:
                    if b'"type":"BonusBatchCompleted"' in record.value and needle in record.value:
                        return json.loads(record.value)
        raise BatchTimedOut(f"no BonusBatchCompleted for {command_id} within {timeout:.0f} s")

    async def stop(self) -> None:
        await self.consumer.stop()


async def run_one(kafka: str, producer: AIOKafkaProducer, billing_url: str, business_date: date,
                  timeout: float = 600) -> dict:
    """RunBonusBatch for a day; the time to its BonusBatchCompleted, with progress samples along the way."""
    watcher = BatchWatcher(kafka)
    await watcher.start(business_date)
    command = new_envelope(RunBonusBatch(business_date=business_date), subject=f"bonus-batch-{business_date}",
                           actor="admin:bench", source="bench", id=str(uuid.uuid4()))
    progress: list[tuple[float, int, int]] = []
    completed_in_db: list[float] = []

    async def sample() -> None:
        async with httpx.AsyncClient(timeout=10, headers=admin_headers()) as http:
            while True:
                response = await http.get(f"{billing_url}/bonus-batches/{business_date}")
                if response.status_code == 200:
                    batch = response.json()
                    progress.append((round(time.monotonic() - started, 1), batch["processed"], batch["bonuses"]))
                    if batch["status"] == "completed":
                        completed_in_db.append(time.monotonic() - started)
                        return
                await asyncio.sleep(1.0)

    started = time.monotonic()
    await producer.send_and_wait(BILLING_ADMIN_COMMANDS, command.to_json(), key=command.subject.encode())
    sampler = asyncio.create_task(sample())
    try:
        try:
            event = await watcher.completed(command.id, timeout)
        except BatchTimedOut as timed_out:
            raise BatchTimedOut(f"{timed_out}; last progress (s, processed, bonuses): "
                                f"{progress[-1] if progress else None}", progress) from None
        seconds = time.monotonic() - started
        try:
            await asyncio.wait_for(sampler, 30)
        except TimeoutError:
            last = progress[-1] if progress else "nothing (no batch row)"
            raise TimeoutError(f"BonusBatchCompleted for {business_date} came, but billing at {billing_url} did not "
                               f"show that batch completed within 30 s (last seen (s, processed, bonuses): {last}): "
                               "is another billing in the same consumer group?") from None
    finally:
        sampler.cancel()
        await watcher.stop()
    return {"seconds_to_completed_event": round(seconds, 2),
            "seconds_to_completed_in_billing": round(completed_in_db[0], 2) if completed_in_db else None,
            "figures": event["data"], "progress": progress}


def start_profiled(platform: Platform, service: str, port: int, profile_dir: Path) -> str:
    """Platform.start, with the service run by pyinstrument (its session saved at stop)."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    processes.LOGS.mkdir(parents=True, exist_ok=True)
    name = f"{service}#0"
    log = open(processes.LOGS / f"{service}-0.log", "ab")
    platform.procs[name] = subprocess.Popen(
        [sys.executable, "-m", "pyinstrument", "-r", "pyisession", "-o", str(profile_dir / f"{service}.pyisession"),
         "-m", service], cwd=processes.ROOT, env=platform.service_env(service, port), stdout=log,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    platform.procs[name].port = port  # type: ignore[attr-defined]
    return name


def stop_profiled(platform: Platform, profile_dir: Path) -> None:
    # SIGINT: pyinstrument survives the KeyboardInterrupt and writes its session (SIGTERM would not).
    for name in list(platform.procs):
        platform.kill(name, signal.SIGINT)
    for service in SERVICES:
        session = profile_dir / f"{service}.pyisession"
        if session.exists() and session.stat().st_size:
            subprocess.run([sys.executable, "-m", "pyinstrument", "--load", str(session), "-r", "text", "--no-color",
                            "-o", str(session.with_suffix(".txt"))], check=False)


async def run(kafka: str | None = None, postgres_url: str | None = None, prefix: str = "bench_",
              port_base: int = 28000, log_dir: Path | None = None, bonuses: int = 100_000,
              clients: int = 10_000, profile_dir: Path | None = None, service_env: dict | None = None) -> dict:
    kafka = kafka or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    # the superuser's URL, with its password
    postgres_url = postgres_url or with_local_superuser_password(os.environ.get("POSTGRES_URL")) or subprocess.run(
        [str(processes.ROOT / "deploy/local/postgres.sh"), "url"], capture_output=True, text=True,
        check=True).stdout.strip()
    processes.LOGS = (log_dir or Path("/var/tmp/escrow-platform/bench-logs")) / "bonus"
    platform = Platform(kafka, postgres_url.rstrip("/"), prefix=f"{prefix}bonus_",
                        env={"BONUS_BATCH_AT": "off", "LOG_LEVEL": "INFO", **(service_env or {})},
                        credentials=partial(as_, kafka))
    ports = {"billing": port_base + 13, "escrow": port_base + 12}
    from tests.infra import ensure_topics

    await ensure_topics(super_user(kafka))
    await platform.claim_groups(SERVICES, who="bonus batch benchmark")  # refuses when another platform is in them
    await platform.prepare()
    billing_dsn, gateway_dsn = _dsn(platform.database_url("billing")), _dsn(platform.database_url("gateway"))
    names = {s: start_profiled(platform, s, ports[s], profile_dir) if profile_dir else platform.start(s, port=ports[s])
             for s in SERVICES}
    producer = AIOKafkaProducer(**as_(kafka, "admin").kafka_options(), enable_idempotence=True)  # RunBonusBatch
    result: dict = {"bonuses": bonuses, "clients": clients, "target_seconds": bonus_target_seconds(bonuses),
                    "verdict": None}
    try:
        for name in names.values():
            await platform.wait_ready(name)
        await wait_for_groups(super_user(kafka), SERVICES)
        await refuse_shared_groups(super_user(kafka), SERVICES, own=1, who="bonus batch benchmark")  # none joined meanwhile
        await producer.start()
        billing_url = f"http://127.0.0.1:{ports['billing']}"
        pids = {s: platform.procs[n].pid for s, n in names.items()}
        result["billing_vm_hwm_kib_idle"] = vm_hwm_kib(pids["billing"])

        # Warm-up: a batch ten times smaller, yesterday's; then the big one, today's (an early run).
        now = datetime.now(timezone.utc)
        yesterday, today = now.date() - timedelta(days=1), now.date()
        small = max(bonuses // 10, 1), max(clients // 10, 1)
        await seed(billing_dsn, yesterday, now - timedelta(days=1), *small, tag="warm")
        warm = await run_one(kafka, producer, billing_url, yesterday)
        result["warm_up"] = {"bonuses": small[0], "clients": small[1], "seconds": warm["seconds_to_completed_event"],
                             "billing_vm_hwm_kib": vm_hwm_kib(pids["billing"])}

        seeded_at = time.monotonic()
        totals = await seed(billing_dsn, today, now - timedelta(minutes=1), bonuses, clients, tag="big")
        result["seed_seconds"] = round(time.monotonic() - seeded_at, 1)
        # The machine's CPU by group: the services, each database apart, autovacuum's workers, the broker, the stand-in.
        named = counted({p: s for s, p in pids.items()}, kafka_broker_pid(kafka))
        cpu_before, began = CpuSnapshot.take(named, platform.prefix, by_database=True), time.perf_counter()
        try:
            big = await run_one(kafka, producer, billing_url, today, timeout=time_allowed(bonuses))
        except BatchTimedOut as timed_out:  # reported, with how far it got, and the run ends here
            result["batch"] = {"timed_out": str(timed_out), "seconds_allowed": time_allowed(bonuses),
                               "progress_samples": timed_out.progress[::max(len(timed_out.progress) // 20, 1)]}
            result["verdict"] = {"batch_within_target": False, "completed": False}
            return result
        used = CpuSnapshot.take(named, platform.prefix, by_database=True).since(cpu_before, time.perf_counter() - began)
        result["batch"] = {**{k: big[k] for k in ("seconds_to_completed_event", "seconds_to_completed_in_billing")},
                           "cpu_seconds": {s: round(used["cpu_seconds"][s], 1) for s in pids},  # as earlier runs had it
                           "machine": machine_cpu(used, bonuses),
                           "progress_samples": big["progress"][::max(len(big["progress"]) // 20, 1)]}
        result["billing_vm_hwm_kib_after_batch"] = vm_hwm_kib(pids["billing"])
        figures = big["figures"]
        charges, charged = await gateway_charges(gateway_dsn, today)
        result["figures"] = {k: figures[k] for k in ("bonuses", "paid", "failed", "totals")}
        result["gateway_charges"] = charges

        rerun = await run_one(kafka, producer, billing_url, today)
        charges_after, charged_after = await gateway_charges(gateway_dsn, today)
        result["rerun"] = {"seconds": rerun["seconds_to_completed_event"],
                           "new_gateway_charges": charges_after - charges,
                           "same_figures": rerun["figures"] == figures}
        async with httpx.AsyncClient(timeout=120, headers=admin_headers()) as http:
            check = (await http.get(f"http://127.0.0.1:{ports['escrow']}/ledger/check")).json()
        expected_charges = clients + len(range(0, clients, 4)) if bonuses >= 2 * clients else None
        seconds = result["batch"]["seconds_to_completed_event"]
        result["verdict"] = {
            "batch_within_target": seconds <= bonus_target_seconds(bonuses),
            "rerun_at_most_10_percent": result["rerun"]["seconds"] <= 0.1 * seconds,
            "rerun_charged_nobody": charges_after == charges and charged_after == charged,
            "every_bonus_paid_once": figures["paid"] == bonuses and figures["totals"] == dict(sorted(totals.items())),
            "one_charge_per_client_and_currency": expected_charges is None or charges == expected_charges,
            "ledger_check_ok": check["ok"],
            "memory_growth_kib_for_10x_bonuses": result["billing_vm_hwm_kib_after_batch"]
            - result["warm_up"]["billing_vm_hwm_kib"],
        }
    finally:
        await producer.stop()
        stop_profiled(platform, profile_dir) if profile_dir else platform.stop_all()
    result["batch"]["progress_samples"] = result["batch"].pop("progress_samples")  # the long part last
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bonus_batch", description=__doc__.splitlines()[0])
    parser.add_argument("--bonuses", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("BENCH_PORT_BASE", "28000")))
    parser.add_argument("--prefix", default=os.environ.get("BENCH_DB_PREFIX", "bench_"))
    parser.add_argument("--profile", type=Path, metavar="DIR", help="run the services under pyinstrument")
    args = parser.parse_args()
    try:
        result = asyncio.run(run(prefix=args.prefix, port_base=args.port_base, bonuses=args.bonuses,
                                 clients=args.clients, profile_dir=args.profile))
    except GroupsTaken as taken:
        sys.exit(str(taken))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
