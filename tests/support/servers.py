"""Restarting the Kafka broker or PostgreSQL under a running test (chaos, broker-restart tests).

Only servers started by this repository's launchers can be restarted, and only the ones the test really uses:
the test suite's own (deploy/local/test-servers.sh, what `make test` runs on) or the platform's
(deploy/local/postgres.sh and kafka/kafka-local.sh with the env.sh settings, what `make chaos` runs on). Which
one is decided by comparing the launchers' addresses with the test's, so a run never restarts a server it does
not use (for example the platform's PostgreSQL while `make test` runs on its own).
"""

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "deploy" / "local"


def _address(url: str) -> str:
    """host:port of a bootstrap list's first server or of a database URL (credentials dropped)."""
    first = url.split(",")[0]
    parts = urlsplit(first if "://" in first else f"//{first}")
    return f"{parts.hostname}:{parts.port}"


def _run(args: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


@dataclass(frozen=True)
class Servers:
    kind: str  # "test" (test-servers.sh) or "platform" (postgres.sh, kafka-local.sh)

    @classmethod
    def of(cls, kafka_bootstrap: str, postgres_url: str) -> "Servers":
        """The launcher whose servers are the ones at these addresses; fails when neither's are."""
        wanted = (_address(kafka_bootstrap), _address(postgres_url))
        test_env = _run([str(LOCAL / "test-servers.sh"), "addresses"]).split()
        if tuple(test_env) == wanted:
            return cls("test")
        platform_env = _run(["bash", "-c", f'source "{LOCAL}/env.sh"; '
                             'echo "127.0.0.1:${KAFKA_PORT:-9092} 127.0.0.1:$PG_PORT"']).split()
        if tuple(platform_env) == wanted:
            return cls("platform")
        raise RuntimeError(f"kafka {wanted[0]} / postgres {wanted[1]} are neither the test servers ({test_env}) nor "
                           f"the platform's ({platform_env}): this test restarts only servers it can name")

    def restart(self, server: str, down_for: float = 2.0) -> None:
        """Stop `server` ("kafka" or "postgres"), leave it down a moment (the fault), start it again."""
        if self.kind == "test":
            _run([str(LOCAL / "test-servers.sh"), "stop-one", server])
            time.sleep(down_for)  # the outage itself, not a wait for a result
            _run([str(LOCAL / "test-servers.sh"), "start-one", server])
            return
        script = str(LOCAL / "postgres.sh") if server == "postgres" else str(LOCAL / "kafka" / "kafka-local.sh")
        _run([script, "stop"], env=dict(os.environ))
        time.sleep(down_for)
        _run([script, "start"], env=dict(os.environ))
