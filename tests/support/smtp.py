"""The SMTP sink (`python -m notifications.smtp_sink`) as a test process: start, stop, read what it received."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
from platform_runtime.priority import yield_cpu

ROOT = Path(__file__).resolve().parents[2]
LOGS = Path(os.environ.get("TEST_LOG_DIR", "/var/tmp/escrow-platform/test-logs"))
_BASE = int(os.environ.get("TEST_PORT_BASE", "18000"))


@dataclass
class SmtpSink:
    smtp_port: int = _BASE + 25
    http_port: int = _BASE + 26
    directory: Path | None = None
    proc: subprocess.Popen | None = None
    # False: mail stored without syncing to disk (the benchmark: it measures the platform, not this stand-in).
    durable: bool = True
    # Above 0: the sink takes its turn after every process at 0 (the benchmark: a real mail server is not on the
    # platform's cores, so the stand-in should take from them only what they leave).
    niceness: int = 0

    def __post_init__(self) -> None:
        # Emptied once per session, then kept across stop/start: mail accepted before a restart stays.
        self.directory = self.directory or LOGS / f"smtp-sink-{self.smtp_port}"
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def env(self) -> dict[str, str]:
        """What the notifications service needs to send here."""
        return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.smtp_port)}

    async def start(self, timeout: float = 30) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.smtp_port),
               "SMTP_SINK_HTTP_PORT": str(self.http_port), "SMTP_SINK_DIR": str(self.directory),
               "SMTP_SINK_DURABLE": "1" if self.durable else "0", "PYTHONUNBUFFERED": "1"}
        with open(LOGS / "smtp-sink.log", "ab") as log:
            # Raised in the child before it execs, so every thread the sink starts inherits it.
            nicer = partial(yield_cpu, self.niceness) if self.niceness else None
            self.proc = subprocess.Popen([sys.executable, "-m", "notifications.smtp_sink"], cwd=ROOT, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=nicer)
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"smtp sink exited with {self.proc.returncode}; see {LOGS}/smtp-sink.log")
                try:
                    if _smtp_answers(self.smtp_port) and (await http.get(self._url("/health"))).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"smtp sink not ready within {timeout}s")
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def messages(self, to: str | None = None) -> list[dict]:
        """Every mail received (duplicates included), in arrival order, with text and HTML bodies."""
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(self._url("/messages"), params={"to": to} if to else None)
            response.raise_for_status()
            return response.json()["items"]

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"


def _smtp_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
