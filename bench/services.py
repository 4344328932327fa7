"""The services under test: all four (contracts, billing, escrow, notifications) as separate processes on
fresh databases, one or more processes per service (the scaling curve).

Built on tests/support/processes.py (the end-to-end tests' Platform), with the benchmark's own
database prefix, HTTP ports and log directory. Also reads their Prometheus metrics. Consumer groups (another
platform's services in them, waiting until they are Stable): tests/support/groups.py.
"""

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
from platform_runtime.credentials import Credentials
from platform_runtime.priority import NICEST
from prometheus_client.parser import text_string_to_metric_families

from tests.support import processes
from tests.support.processes import Platform
from tests.support.smtp import SmtpSink

from .principals import as_

SAGA_SERVICES = ("contracts", "billing", "escrow")
SMTP_SINK = "smtp sink (stand-in of the mail server)"
# Notifications is on no saga's path, but it reads the same events (skipping most of them) and takes its share
# of the machine like in production: the benchmark runs it too.
BENCH_SERVICES = (*SAGA_SERVICES, "notifications")
# Counters and histograms worth a delta per phase: how big the batches were, how long they took.
METRICS = ("consumer_batch_seconds", "messages_consumed_total", "outbox_relayed_total", "consumer_offset_commits_total")


@dataclass
class BenchPlatform:
    kafka: str
    postgres_url: str
    prefix: str
    port_base: int
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = BENCH_SERVICES
    instances: int = 1  # processes per service, each its own consumer group member
    processes: dict[str, int] = field(default_factory=dict)  # a service's own count, in place of `instances`
    profile_dir: Path | None = None  # each service runs under a profiler, its profile saved there at stop
    profiler: str = "cpu"  # cpu: cProfile timed by CPU time (bench/profile_service.py); wall: pyinstrument
    sink_niceness: int = NICEST  # the mail stand-in's; a real mail server is not on the platform's cores

    def __post_init__(self) -> None:
        processes.LOGS = self.log_dir  # Platform.start reads the module's log directory
        # Notifications mails to a local sink, the stand-in of the mail server (its CPU is not the platform's).
        self.smtp = SmtpSink(smtp_port=self.port_base + 25, http_port=self.port_base + 26,
                             directory=self.log_dir / f"smtp-sink-{self.port_base + 25}", durable=False,
                             niceness=self.sink_niceness)
        self.platform = Platform(self.kafka, self.postgres_url, prefix=self.prefix, env={**self.smtp.env, **self.env},
                                 credentials=partial(as_, self.kafka))  # each service as its own principal
        self.ports = {s: self.port_base + i for i, s in enumerate(processes.SERVICES, start=1)}  # instance 0

    def count(self, service: str) -> int:
        """How many processes of the service run."""
        return self.processes.get(service, self.instances)

    def port(self, service: str, instance: int) -> int:
        return self.ports[service] + 10 * instance

    async def start(self) -> None:
        await self.platform.claim_groups(self.services, who="bench")  # refuses when another platform is in them
        await self.platform.prepare()
        if "notifications" in self.services:
            await self.smtp.start()
        names = [self._start(s, i) for s in self.services for i in range(self.count(s))]
        for name in names:
            await self.platform.wait_ready(name, timeout=240)  # a loaded machine starts Python slowly

    def _start(self, service: str, instance: int = 0) -> str:
        if self.profile_dir is None or instance:
            return self.platform.start(service, str(instance), port=self.port(service, instance))
        # Platform.start, with the service run by a profiler.
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        name, port = f"{service}#0", self.ports[service]
        if self.profiler == "wall":
            command = [sys.executable, "-m", "pyinstrument", "-r", "pyisession",
                       "-o", str(self.profile_dir / f"{service}.pyisession"), "-m", service]
        else:
            command = [sys.executable, "-m", "bench.profile_service", str(self.profile_dir / f"{service}.prof"), service]
        log = open(self.log_dir / f"{service}-0.log", "ab")
        self.platform.procs[name] = subprocess.Popen(
            command, cwd=processes.ROOT, env=self.platform.service_env(service, port), stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.platform.procs[name].port = port  # type: ignore[attr-defined]
        return name

    def stop(self) -> None:
        try:
            self._stop_services()
        finally:
            self.smtp.stop()

    def _stop_services(self) -> None:
        if self.profile_dir is None:
            self.platform.stop_all()
            return
        # uvicorn re-raises the signal it caught once shut down: SIGTERM would kill the profiler before it
        # writes, SIGINT ends in a KeyboardInterrupt that pyinstrument survives.
        for name in list(self.platform.procs):
            self.platform.kill(name, signal.SIGINT)
        for service in self.services:
            session = self.profile_dir / f"{service}.pyisession"
            if session.exists() and session.stat().st_size:  # a readable summary beside the session
                subprocess.run([sys.executable, "-m", "pyinstrument", "--load", str(session), "-r", "text",
                                "--no-color", "-o", str(session.with_suffix(".txt"))], check=False)

    def pids(self) -> dict[int, str]:
        """pid -> service, for every process still running (and the mail sink)."""
        running = {proc.pid: name.split("#")[0] for name, proc in self.platform.procs.items() if proc.poll() is None}
        if self.smtp.proc and self.smtp.proc.poll() is None:
            running[self.smtp.proc.pid] = SMTP_SINK
        return running

    async def metrics(self) -> dict[str, dict[str, float]]:
        """Per service: the sums of the runtime's counters and histograms named in METRICS over its processes."""
        found: dict[str, dict[str, float]] = {}
        async with httpx.AsyncClient(timeout=5) as http:
            for name, proc in self.platform.procs.items():
                service = name.split("#")[0]
                text = (await http.get(f"http://127.0.0.1:{proc.port}/metrics")).text
                values = found.setdefault(service, {})
                for family in text_string_to_metric_families(text):
                    if family.name.removesuffix("_total") not in {m.removesuffix("_total") for m in METRICS}:
                        continue
                    for sample in family.samples:
                        if sample.name.endswith(("_created", "_bucket")):
                            continue
                        label = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                        key = f"{sample.name}{{{label}}}" if label else sample.name
                        values[key] = values.get(key, 0.0) + sample.value
        return found

    async def get_json(self, service: str, path: str) -> dict:
        """A read of the platform's API as the operators' principal (admin)."""
        async with httpx.AsyncClient(timeout=10, headers=Credentials.local("admin").http_headers()) as http:
            response = await http.get(f"http://127.0.0.1:{self.ports[service]}{path}")
            response.raise_for_status()
            return response.json()


def metric_deltas(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """What each service did between two metric readings, with the mean batch size and time."""
    out: dict[str, dict[str, float]] = {}
    for service, values in after.items():
        delta = {k: v - before.get(service, {}).get(k, 0.0) for k, v in values.items()}
        batches = delta.get("consumer_batch_seconds_count", 0.0)
        consumed = sum(v for k, v in delta.items() if k.startswith("messages_consumed_total"))
        summary = {"batches": batches, "messages_consumed": consumed,
                   "outbox_relayed": delta.get("outbox_relayed_total", 0.0),
                   "offset_commits": delta.get("consumer_offset_commits_total", 0.0)}
        if batches:
            summary["mean_messages_per_batch"] = round(consumed / batches, 2)
            summary["mean_batch_ms"] = round(delta.get("consumer_batch_seconds_sum", 0.0) / batches * 1000, 3)
        out[service] = summary
    return out


def default_log_dir() -> Path:
    return Path(os.environ.get("BENCH_LOG_DIR", "/var/tmp/escrow-platform/bench-logs"))
