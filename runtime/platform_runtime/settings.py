"""Settings every service reads from its environment (pydantic-settings)."""

from datetime import timedelta
from typing import Annotated, Literal

import isodate
from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .priority import NICEST


def _duration(value: object) -> timedelta:
    """ISO 8601 (`P14D`, `PT5S`) or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    text = str(value).strip()
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        parsed = isodate.parse_duration(text)
    if not isinstance(parsed, timedelta):  # years/months have no fixed length
        raise ValueError(f"duration {text!r} must be in days or smaller units")
    return parsed


Duration = Annotated[timedelta, BeforeValidator(_duration)]
# What a fetch asks the broker to wait for (see ServiceSettings), bounded as the broker bounds them.
FetchMinBytes = Annotated[int, Field(ge=1, le=50 * 1024 * 1024)]
FetchMaxWaitMs = Annotated[int, Field(ge=0, le=30_000)]
Niceness = Annotated[int, Field(ge=0, le=NICEST)]  # a process's niceness, as the kernel bounds it (priority.py)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # PLAINTEXT on a developer's broker; SASL_SSL + SCRAM-SHA-512 with a Strimzi KafkaUser (kafka_security.py).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # The cluster CA (Strimzi: the <cluster>-cluster-ca-cert Secret's ca.crt); None: the system's CAs.
    kafka_ssl_cafile: str | None = None
    # Consumers fetch within Kafka fetch sessions (KIP-227, fetch_sessions.py): a fetch names only the partitions
    # whose offset moved, instead of all 48-60 a service holds. false: aiokafka's full fetches.
    kafka_fetch_sessions: bool = True
    # The service runs as its database's DML-only role (README, "Databases: least privilege"); `migrate` as the
    # owner role, from MIGRATION_DATABASE_URL (DATABASE_URL when unset: one role for both, on a bare database).
    database_url: str
    migration_database_url: str | None = None
    # 127.0.0.1 on a developer's machine; the container image sets 0.0.0.0 so probes and Prometheus reach it.
    http_host: str = "127.0.0.1"
    http_port: int
    # The read API's callers, by the SHA-256 (hex) of their bearer tokens: `integrator=<hex>,admin=<hex>,analytics=<hex>`
    # (http_auth.py; scopes in read_scopes.py). Empty: every path but /health/* and /metrics answers 401.
    http_token_hashes: str = ""
    log_level: str = "INFO"
    # The process's niceness (priority.py), set once at start and only ever raised from what it was started with.
    # A service no saga waits for may yield the CPU to those on the sagas' path (notifications does).
    process_niceness: Niceness = 0
    # uvloop (libuv) by default; asyncio to compare or to rule the loop out (the benchmark measures both).
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Once started, the objects that live as long as the process are kept out of the garbage collector's full
    # collections (heap.py): no pause of 60-100 ms of CPU for walking them. False to compare.
    gc_freeze_at_start: bool = True
    # A pooled connection idle longer than this is pinged before use (one that was in use a moment ago is not:
    # a ping per transaction was a round trip on every message; a dead one is still caught by the consumer's
    # retry of transient faults).
    database_ping_after_idle: Duration = timedelta(seconds=10)
    # A message that keeps failing for a reason other than an unreachable database goes to the
    # dead-letter topic after this many attempts instead of stalling its partition.
    consumer_max_attempts: int = 5
    consumer_retry_backoff: Duration = timedelta(milliseconds=200)
    consumer_max_records: int = 200
    # Offsets are committed after the database commit, at most one request per this interval (offsets.py): one
    # per batch cost more than the message itself at low rates. 0: after every batch.
    consumer_commit_interval: Duration = timedelta(milliseconds=500)
    # How long one fetch waits for records when there are none; it returns as soon as any arrive,
    # so this is no latency cost (service.py drops faststream's extra sleep after an empty fetch).
    consumer_batch_timeout_ms: int = 200
    # What a fetch asks the broker to wait for: this many bytes of records, or this long, whichever comes first.
    # One byte by default: a record is handed over as soon as it is written, since every hop of a saga waits on it.
    # A service off the sagas' path may trade a bounded delay for fewer, larger batches (notifications does).
    consumer_fetch_min_bytes: FetchMinBytes = 1
    consumer_fetch_max_wait_ms: FetchMaxWaitMs = 500
    # Rows per relay pass. Each pass's read walks the outbox's unsent index from its start, over the entries of
    # rows already published and deleted that vacuum has not removed yet, so its cost is mostly per pass: at
    # 2,000 a bonus batch of 100,000 took 71 s against 91 s at 500 (the relay's read 36 ms a pass against 44).
    relay_batch_size: int = 2000
    # The largest message (JSON envelope, bytes) a handler may write to the outbox, checked when it is
    # written: below the producer's max_request_size and the broker's message.max.bytes (1 MiB each by
    # default), so no row the relay cannot publish is ever created.
    max_message_bytes: int = 1_000_000
    # The relay queues a whole pass of rows before it waits for their acks, so they are batched
    # without lingering: a linger would only add its length to every hop.
    producer_linger_ms: int = 0
    # The most a produce request carries for one partition. aiokafka keeps one request in flight per broker
    # and a send() into a full batch waits for it to be drained, so with its default (16 KiB, ~16 of our
    # messages) a pass of 500 rows to a few partitions took one round trip per 16 rows, and each message over
    # 16 KiB (a bonus batch's PostBonuses is ~44 KB) took a round trip of its own. Below the broker's
    # message.max.bytes (1 MiB), which bounds a batch too.
    producer_max_batch_bytes: int = 512 * 1024
    # How long a relay waits for a NOTIFY before looking at the outbox anyway (a safety net
    # for a lost notification, not the normal path).
    relay_idle_check: Duration = timedelta(seconds=5)
    # How often a standby relay (another process of the service holds the lock) tries the lock: the longest a
    # takeover waits after the active relay's connection dies. Tried, not waited for: see relay.py.
    relay_standby_poll: Duration = timedelta(seconds=1)
    timer_poll_interval: Duration = timedelta(seconds=1)
    # Readiness fails when the consumer has lag but handled nothing for this long.
    consumer_stall_after: Duration = timedelta(seconds=120)
    # How often the backlog gauges (consumer lag, unsent outbox, due timers) are read from Kafka and the database.
    metrics_interval: Duration = timedelta(seconds=15)
    # OpenTelemetry spans (tracing.py): off by default; the trace context travels with every message either way.
    tracing_enabled: bool = False
    otel_exporter_otlp_endpoint: str | None = None  # also turns tracing on; the exporter reads OTEL_EXPORTER_OTLP_*
    tracing_file: str | None = None  # spans as JSON lines too; `{service}` in the path is the service's name

    @field_validator("http_token_hashes")
    @classmethod
    def _token_hashes_parse(cls, value: str) -> str:
        from .http_auth import TokenHashes

        TokenHashes.parse(value)  # a typo fails at start, not as 401s later
        return value


class MigrationSettings(BaseSettings):
    """What `migrate` reads: it needs no other setting, so a migration job is handed the owner's URL only."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    migration_database_url: str | None = None
    database_url: str | None = None

    @property
    def url(self) -> str:
        url = self.migration_database_url or self.database_url
        if not url:
            raise ValueError("set MIGRATION_DATABASE_URL (the owner role's URL) or DATABASE_URL")
        return url
