"""The platform's services as real, separate OS processes, for end-to-end and crash tests.

Each test session gets fresh databases (t_<service>) and its own HTTP ports, so a developer's
`make up` platform and its data are left alone. As in production, each database has an owner role that the
migrations run as and a DML-only role that the service runs as (t_<service>_owner, t_<service>_app,
platform_runtime.database_roles, passwords of this session's own): the whole end-to-end suite runs the services
with DML only. Tests that look into a database directly use the superuser (`database_url`).
Its consumer groups are claimed before anything starts (tests/support/groups.py): no other platform's services
may be in them, and they begin at the log end, so what the broker held before never delays a test.
"""

import asyncio
import contextlib
import functools
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from platform_runtime.credentials import Credentials
from platform_runtime.database_roles import DatabaseRoles, provision
from platform_runtime.http_auth import hash_token
from platform_runtime.read_scopes import PRINCIPALS
from platform_schemas.acls import SUPER_USER
from platform_schemas.topics import TOPICS, dlq
from sqlalchemy.engine import make_url

from .groups import refuse_shared_groups, start_groups_at_log_end

ROOT = Path(__file__).resolve().parents[2]
LOGS = Path(os.environ.get("TEST_LOG_DIR", "/var/tmp/escrow-platform/test-logs"))
# TEST_PORT_BASE and TEST_DB_PREFIX let two test sessions (each with its own Kafka broker) run side by side.
_BASE = int(os.environ.get("TEST_PORT_BASE", "18000"))
TEST_PORTS = {"contracts": _BASE + 1, "escrow": _BASE + 2, "billing": _BASE + 3, "notifications": _BASE + 4}
DB_PREFIX = os.environ.get("TEST_DB_PREFIX", "t_")
SERVICES = list(TEST_PORTS)
DATABASES = [*SERVICES, "gateway"]  # gateway: the payment gateway simulator's, billing's second database
# What a service may read: every platform topic but the dead-letter ones (groups never read those).
READABLE_TOPICS = [t.name for t in TOPICS if t.name not in {dlq(u.name) for u in TOPICS}]


@functools.cache
def http_token_hashes() -> str:
    """HTTP_TOKEN_HASHES for the services: the local principals' tokens (deploy/local/credentials.sh), hashed."""
    return ",".join(f"{p}={hash_token(Credentials.local(p).http_token)}" for p in PRINCIPALS)


def for_service(env: dict[str, str], service: str) -> dict[str, str]:
    """The extra environment one service is given: every plain `KEY`, and `service:KEY` for this service alone (a
    benchmark's setting tried on some services, e.g. `contracts:CONSUMER_FETCH_MAX_WAIT_MS`), which wins."""
    plain = {k: v for k, v in env.items() if ":" not in k}
    own = {k.split(":", 1)[1]: v for k, v in env.items() if k.startswith(f"{service}:")}
    return {**plain, **own}


def available(service: str) -> bool:
    return importlib.util.find_spec(f"{service}.__main__") is not None


@contextlib.asynccontextmanager
async def _maintenance_connection(postgres_url: str):
    """The server's `postgres` database, where databases are dropped and created."""
    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1).rstrip("/") + "/postgres"
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def drop_databases(postgres_url: str, names: list[str]) -> None:
    async with _maintenance_connection(postgres_url) as conn:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def recreate_databases(postgres_url: str, names: list[str]) -> None:
    async with _maintenance_connection(postgres_url) as conn:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')


@dataclass
class Platform:
    """Starts, kills and restarts service processes; several instances of one service may run."""

    kafka: str
    postgres_url: str
    prefix: str = DB_PREFIX
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    began_at: dict = field(default_factory=dict)  # the log ends the groups were set to begin at (TopicPartition -> offset)
    history: int = 0  # records on notifications' topics before it started (tests/support/history.py)
    log_starts: dict[Path, int] = field(default_factory=dict)  # where this session's lines begin in each log
    passwords: dict[str, str] = field(default_factory=dict)  # its database roles', made when first used
    # Kafka credentials by principal (Infra.credentials); None: PLAINTEXT to `kafka` for every principal
    credentials: Callable[[str], Credentials] | None = None

    def kafka_as(self, name: str) -> Credentials:
        if self.credentials is None:  # PLAINTEXT, the read API's token kept
            return Credentials(bootstrap_servers=self.kafka, http_token=Credentials.local(name).http_token)
        return self.credentials(name)

    def database_url(self, service: str) -> str:
        """The database as the superuser: for tests that look into it or set things up."""
        return f"{self.postgres_url.rstrip('/')}/{self.prefix}{service}"

    def roles(self, database: str) -> DatabaseRoles:
        return DatabaseRoles(f"{self.prefix}{database}")

    def role_url(self, database: str, role: str) -> str:
        """The database as one of its roles: `owner` (migrations) or `app` (the running service)."""
        roles = self.roles(database)
        name = getattr(roles, role)
        password = self.passwords.setdefault(name, secrets.token_hex(16))
        return make_url(self.postgres_url).set(username=name, password=password, database=roles.name) \
            .render_as_string(hide_password=False)

    def service_env(self, service: str, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, "HTTP_TOKEN_HASHES": http_token_hashes(), **for_service(self.env, service), **(extra or {})}
        env.update(KAFKA_BOOTSTRAP_SERVERS=self.kafka, DATABASE_URL=self.role_url(service, "app"),
                   HTTP_PORT=str(port), PYTHONUNBUFFERED="1")
        if service == "billing":
            env["GATEWAY_DATABASE_URL"] = self.role_url("gateway", "app")
        env.update(self.kafka_as(service).service_env())  # each service as its own principal
        return env

    def migration_env(self, service: str) -> dict[str, str]:
        env = self.service_env(service, TEST_PORTS[service])
        env["MIGRATION_DATABASE_URL"] = self.role_url(service, "owner")
        if service == "billing":
            env["GATEWAY_MIGRATION_DATABASE_URL"] = self.role_url("gateway", "owner")
        return env

    async def prepare(self) -> None:
        """Fresh databases, their roles, and the services' migrations run as the owners."""
        await drop_databases(self.postgres_url, [self.roles(d).name for d in DATABASES])
        admin = self.postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        for database in DATABASES:
            roles = self.roles(database)
            self.role_url(database, "owner"), self.role_url(database, "app")  # their passwords
            await provision(admin, roles, self.passwords[roles.owner], self.passwords[roles.app])
        for service in SERVICES:
            if available(service):
                done = subprocess.run([sys.executable, "-m", service, "migrate"], cwd=ROOT, stdin=subprocess.DEVNULL,
                                      env=self.migration_env(service), capture_output=True, timeout=600)
                if done.returncode:
                    tail = done.stderr.decode()[-3000:]
                    raise RuntimeError(f"{service} migrate failed ({done.returncode}):\n{tail}")

    async def claim_groups(self, services=None, who: str = "the test platform") -> None:
        """Before any of our services joins: refuses (GroupsTaken, one line) when another platform's services are
        in their consumer groups, then sets the groups to begin at the log end of every topic."""
        groups = tuple(s for s in (services or SERVICES) if available(s))
        kafka = self.kafka_as(SUPER_USER)  # a setup step: the super user acts in the services' groups
        await refuse_shared_groups(kafka, groups, who=who)
        self.began_at = await start_groups_at_log_end(kafka, groups, READABLE_TOPICS)

    def start(self, service: str, instance: str = "0", port: int | None = None,
              extra_env: dict[str, str] | None = None) -> str:
        name = f"{service}#{instance}"
        port = port or TEST_PORTS[service]
        LOGS.mkdir(parents=True, exist_ok=True)
        log = open(LOGS / f"{service}-{instance}.log", "ab")
        self.log_starts.setdefault(LOGS / f"{service}-{instance}.log", log.tell())
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", service], cwd=ROOT, env=self.service_env(service, port, extra_env),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs[name].port = port  # type: ignore[attr-defined]
        return name

    async def wait_ready(self, name: str, timeout: float = 180) -> None:  # a loaded machine starts Python slowly
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {LOGS}")
                try:
                    if (await http.get(f"http://127.0.0.1:{proc.port}/health/ready")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"{name} not ready within {timeout}s")

    async def start_all(self) -> None:
        names = [self.start(s) for s in SERVICES if available(s)]
        for name in names:
            await self.wait_ready(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.stop([name], sig)

    def stop(self, names: list[str], sig: int = signal.SIGTERM) -> None:
        """Signal every one of them first, then wait for each: their graceful stops overlap."""
        running = [self.procs[name] for name in names if self.procs[name].poll() is None]
        for proc in running:
            proc.send_signal(sig)
        for proc in running:
            proc.wait(timeout=60)

    async def restart(self, name: str, sig: int = signal.SIGKILL) -> None:
        service, instance = name.split("#")
        port = self.procs[name].port
        self.kill(name, sig)
        self.start(service, instance, port)
        await self.wait_ready(name)

    def stop_all(self) -> None:
        self.stop(list(self.procs))
