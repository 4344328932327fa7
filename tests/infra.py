"""Where the tests' Kafka and PostgreSQL come from, in this order:

(a) servers named by the environment: KAFKA_BOOTSTRAP_SERVERS, POSTGRES_URL (a base URL such as
    postgresql+asyncpg://user:pw@host:5432, database names are appended);
(b) a Docker engine, if one answers a ping within 2 s: throw-away containers (testcontainers);
(c) the project's own launchers: deploy/local/test-servers.sh, the test suite's own broker and cluster (a work
    directory and ports of their own, never the platform's 9092/15432; fast when already running).
`make test` starts (c) fresh and names it in the environment, so it comes in as (a).
The platform's databases and topics are created in every case (idempotently).

Kafka principals: every Kafka client of the tests takes its options from `infra.credentials(NAME)` (a
platform_runtime.credentials.Credentials): the services their own principal, the tests' PlatformClient
`integrator` (and `admin` for the admin command topics), dead-letter readers `admin`, and fixtures that set the
broker up (scratch topics, history pre-fill, consumer-group claiming) the super user `broker`. On (a) and (c) these
come from deploy/local/credentials.sh (SASL/SCRAM with the ACLs of platform_schemas.acls; KAFKA_SECURITY_PROTOCOL
=PLAINTEXT for a broker without authentication). (b) is a PLAINTEXT broker without authorizer: there every
`credentials(NAME)` is PLAINTEXT to it, so everything runs, but nothing checks the ACLs (the ACL tests skip).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import AsyncIterator

import asyncpg
from platform_runtime.credentials import Credentials
from platform_schemas.acls import SUPER_USER

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "deploy" / "local"
DATABASES = ("contracts", "escrow", "billing", "notifications", "gateway")
KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:15"


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    postgres_url: str  # base URL without a database
    source: str  # where each came from, e.g. "kafka=local,postgres=env"
    secured: bool = True  # SASL + ACLs (the local brokers); False: a PLAINTEXT container (branch b)

    def credentials(self, name: str) -> Credentials:
        """NAME's Kafka credentials on this session's broker (see the module's docstring)."""
        return _credentials(self.kafka_bootstrap, self.secured, name)

    def database_url(self, dbname: str) -> str:
        """SQLAlchemy asyncpg URL of one database, e.g. infra.database_url("escrow")."""
        return f"{self.postgres_url.rstrip('/')}/{dbname}"


@lru_cache(maxsize=None)
def _credentials(bootstrap: str, secured: bool, name: str) -> Credentials:
    local = Credentials.local(name, env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    # a PLAINTEXT broker: no Kafka credentials, the read API's token stays (the services check it either way)
    return local if secured else Credentials(bootstrap_servers=bootstrap, http_token=local.http_token)


def _load_topics_module():
    spec = importlib.util.spec_from_file_location("platform_local_topics", LOCAL / "topics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def ensure_topics(kafka: Credentials) -> list[str]:
    return await _load_topics_module().ensure_topics(kafka.kafka_options())


async def ensure_databases(postgres_url: str, names=DATABASES, timeout: float = 60) -> None:
    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1).rstrip("/") + "/postgres"
    deadline = asyncio.get_running_loop().time() + timeout
    while True:  # a fresh container may still be starting
        try:
            conn = await asyncpg.connect(dsn, timeout=5)
            break
        except (OSError, asyncpg.PostgresError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        have = {r["datname"] for r in await conn.fetch("select datname from pg_database")}
        for name in names:
            if name not in have:
                try:
                    await conn.execute(f'create database "{name}"')
                except asyncpg.DuplicateDatabaseError:  # another test process was quicker
                    pass
    finally:
        await conn.close()


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:  # no SDK, no socket, no engine: all mean "no Docker"
        return False


def _run(*cmd: str | Path) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip()


def _local_servers() -> dict[str, str]:
    """Starts the test servers when they are not running; their KAFKA_BOOTSTRAP_SERVERS and POSTGRES_URL."""
    script = LOCAL / "test-servers.sh"
    _run(script, "start")
    exported = _run(script, "env").removeprefix("export ").split()
    return dict(item.split("=", 1) for item in exported)


def _local_postgres() -> str:
    return _local_servers()["POSTGRES_URL"]


def _local_kafka() -> str:
    return _local_servers()["KAFKA_BOOTSTRAP_SERVERS"]


def kafka_cluster_id() -> str:
    """A cluster id as Kafka's Uuid.randomUuid() makes it: 22-char unpadded base64url of 16 random bytes, drawn
    again when it begins with '-' (the storage tool would read it as an option) or is a reserved id."""
    import base64
    import uuid

    reserved = {"AAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAQ"}
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-") and cluster_id not in reserved:
            return cluster_id


def _docker_postgres(stack) -> str:
    from testcontainers.community.postgres import PostgresContainer

    pg = PostgresContainer(POSTGRES_IMAGE, username="postgres", password="postgres", dbname="postgres")
    pg.with_command("postgres -c max_connections=300")
    stack.callback(pg.stop)  # registered first: a failed start still removes the container
    pg.start()
    return f"postgresql+asyncpg://postgres:postgres@{pg.get_container_host_ip()}:{pg.get_exposed_port(5432)}"


def _docker_kafka(stack) -> str:
    """apache/kafka in KRaft mode. testcontainers' KafkaContainer only drives Confluent images, so this
    does the same trick by hand: the advertised listener needs the mapped port, known only after start."""
    import re

    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    script = "/tc-start.sh"
    kafka = DockerContainer(KAFKA_IMAGE).with_exposed_ports(9092)
    kafka.with_envs(
        CLUSTER_ID=kafka_cluster_id(),
        KAFKA_NODE_ID="1",
        KAFKA_PROCESS_ROLES="broker,controller",
        KAFKA_LISTENERS="PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:19092,CONTROLLER://0.0.0.0:9093",
        KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
        KAFKA_INTER_BROKER_LISTENER_NAME="BROKER",
        KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
        KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
        KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
        KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS="1",
        KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
        KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
        KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
        KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
        KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
        KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
    )
    kafka.with_command(["sh", "-c", f"while [ ! -f {script} ]; do sleep 0.1; done; exec sh {script}"])
    stack.callback(kafka.stop)
    kafka.start()
    host, port = kafka.get_container_host_ip(), kafka.get_exposed_port(9092)
    start = (
        f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{host}:{port},BROKER://localhost:19092\n"
        "exec /etc/kafka/docker/run\n"
    )
    _put_file(kafka, script, start.encode())
    LogMessageWaitStrategy(re.compile(r"Kafka Server started")).with_startup_timeout(120).wait_until_ready(kafka)
    return f"{host}:{port}"


def _put_file(container, path: str, content: bytes) -> None:
    import io
    import tarfile
    import time

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo(name=path.lstrip("/"))
        info.size, info.mtime, info.mode = len(content), int(time.time()), 0o755
        tar.addfile(info, io.BytesIO(content))
    container.get_wrapped_container().put_archive("/", archive.getvalue())


def with_local_superuser_password(url: str | None) -> str | None:
    """A POSTGRES_URL naming the superuser without a password gets the local clusters' one (deploy/local/secrets.sh:
    `secret pg-postgres`, when it exists): every TCP login needs a password now, and environments written
    before that keep working."""
    if not url:
        return url
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    work = os.environ.get("ESCROW_WORK", "/var/tmp/escrow-platform")
    secret = Path(os.environ.get("SECRETS_DIR", f"{work}/secrets")) / "pg-postgres"
    if parsed.username != "postgres" or parsed.password or not secret.is_file():
        return url
    return parsed.set(password=secret.read_text().strip()).render_as_string(hide_password=False)


@asynccontextmanager
async def provide_infra() -> AsyncIterator[Infra]:
    """Yields the servers; containers it started are removed on exit, local servers are left running."""
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    postgres = with_local_superuser_password(os.environ.get("POSTGRES_URL"))
    source = {"kafka": "env", "postgres": "env"}
    with ExitStack() as containers:
        if not (kafka and postgres):
            if await asyncio.to_thread(docker_available):
                kind, start_pg, start_kafka = "docker", partial(_docker_postgres, containers), partial(_docker_kafka, containers)
            else:
                kind, start_pg, start_kafka = "local", _local_postgres, _local_kafka
            if not postgres:
                postgres, source["postgres"] = await asyncio.to_thread(start_pg), kind
            if not kafka:
                kafka, source["kafka"] = await asyncio.to_thread(start_kafka), kind
        await ensure_databases(postgres)
        servers = Infra(kafka_bootstrap=kafka, postgres_url=postgres, secured=source["kafka"] != "docker",
                        source=f"kafka={source['kafka']},postgres={source['postgres']}")
        await ensure_topics(servers.credentials(SUPER_USER))
        yield servers
