"""This machine's raw limits, with the platform's durable settings and none of its code.

- Kafka: one message produced (idempotent producer, acks=all, no linger) and consumed, one at a time:
  the floor under every hop of a saga.
- PostgreSQL: one saga step committed (a saga row and an outbox row in one transaction,
  synchronous_commit on), from one connection and from N concurrent ones; and the same step
  committed 50 at a time, as the platform's consumers do with a fetched batch.
"""

import asyncio
import json
import resource
import time
import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .principals import super_user
from .stats import broker_cpu_seconds, summary_ms

ROUND_TRIP_TOPIC = "bench.round-trip"
PAYLOAD = json.dumps({"type": "ClientCharged", "data": {"amount": 50_000, "currency": "USD", "pad": "x" * 900}}).encode()


# -- Kafka ------------------------------------------------------------------------------------------
async def _ensure_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(**super_user(bootstrap).kafka_options())
    await admin.start()
    try:
        if ROUND_TRIP_TOPIC not in await admin.list_topics():
            try:
                await admin.create_topics([NewTopic(ROUND_TRIP_TOPIC, 1, 1, topic_configs={"retention.ms": "3600000"})])
            except TopicAlreadyExistsError:
                pass
        while ROUND_TRIP_TOPIC not in await admin.list_topics():
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _broker_ms(before: tuple[float, float], after: tuple[float, float], count: int) -> dict[str, float]:
    """The broker's CPU per message or commit between two readings of broker_cpu_seconds: its work, and its JIT
    compiler's apart (the raw limits run first, often on a broker just started: its compiling is a warm-up, not a
    message's floor)."""
    return {"work": round((after[0] - before[0]) / count * 1000, 3),
            "jit_compiler": round((after[1] - before[1]) / count * 1000, 3)}


async def kafka_round_trip(bootstrap: str, samples: int = 500, warmup: int = 30, broker_pid: int | None = None) -> dict:
    """Produce one message, wait until a consumer has it, repeat: round trip and produce-ack times, and the CPU one
    message costs one at a time: this process's (aiokafka producing and fetching it) and the broker's."""
    await _ensure_topic(bootstrap)
    producer = AIOKafkaProducer(**super_user(bootstrap).kafka_options(), enable_idempotence=True, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(**super_user(bootstrap).kafka_options(), enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    tp = TopicPartition(ROUND_TRIP_TOPIC, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    await consumer.position(tp)
    arrived: dict[bytes, float] = {}
    waiting: dict[bytes, asyncio.Future] = {}

    async def receive() -> None:
        while True:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                now = time.perf_counter()
                for record in records:
                    arrived[record.key] = now
                    if (future := waiting.pop(record.key, None)) and not future.done():
                        future.set_result(None)

    reader = asyncio.create_task(receive())
    round_trips, acks = [], []
    try:
        for i in range(warmup + samples):
            if i == warmup:
                own, broker = _own_cpu(), broker_cpu_seconds(broker_pid)
            key = uuid.uuid4().hex.encode()
            delivered = waiting[key] = asyncio.get_running_loop().create_future()
            started = time.perf_counter()
            await producer.send_and_wait(ROUND_TRIP_TOPIC, PAYLOAD, key=key)
            acked = time.perf_counter()
            try:
                await asyncio.wait_for(delivered, 10)
            except TimeoutError:
                raise TimeoutError(f"raw limits: record {i} sent to {ROUND_TRIP_TOPIC} not read back within 10 s") from None
            if i >= warmup:
                acks.append(acked - started)
                round_trips.append(arrived.pop(key) - started)
            arrived.pop(key, None)
        own, broker = _own_cpu() - own, _broker_ms(broker, broker_cpu_seconds(broker_pid), samples)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
    cpu = {"client_ms_per_message": round(own / samples * 1000, 3)}
    if broker_pid:
        cpu["broker_ms_per_message"] = broker["work"]
        cpu["broker_jit_compiler_ms_per_message"] = broker["jit_compiler"]
    return {"settings": "idempotent producer, acks=all, linger_ms=0, payload ~1 KB, one message at a time",
            "round_trip_ms": summary_ms(round_trips), "produce_ack_ms": summary_ms(acks),
            "cpu_one_at_a_time": cpu, "offset_commit": await offset_commit_cost(bootstrap, broker_pid)}


async def offset_commit_cost(bootstrap: str, broker_pid: int | None, commits: int = 300) -> dict:
    """One consumer group member committing one offset at a time: the wall time and the CPU of each commit (the
    runtime coalesces them: runtime/platform_runtime/offsets.py)."""
    consumer = AIOKafkaConsumer(ROUND_TRIP_TOPIC, **super_user(bootstrap).kafka_options(), enable_auto_commit=False,
                                group_id=f"bench-offset-commit-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw limits: no partition of {ROUND_TRIP_TOPIC} assigned within 30 s")
            await asyncio.sleep(0.1)
        tp = TopicPartition(ROUND_TRIP_TOPIC, 0)
        end = (await consumer.end_offsets([tp]))[tp]
        own, broker, started = _own_cpu(), broker_cpu_seconds(broker_pid), time.perf_counter()
        for i in range(commits):
            await consumer.commit({tp: max(end - commits + i, 0)})
        wall, own = time.perf_counter() - started, _own_cpu() - own
        broker = _broker_ms(broker, broker_cpu_seconds(broker_pid), commits)
    finally:
        await consumer.stop()
    cost = {"wall_ms": round(wall / commits * 1000, 3), "client_cpu_ms": round(own / commits * 1000, 3)}
    if broker_pid:
        cost["broker_cpu_ms"] = broker["work"]
        cost["broker_jit_compiler_cpu_ms"] = broker["jit_compiler"]
    return cost


# -- PostgreSQL -------------------------------------------------------------------------------------
SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_sagas (
    saga_id text PRIMARY KEY, kind text NOT NULL, contract_id text NOT NULL, status text NOT NULL,
    step text NOT NULL, data jsonb NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS raw_sagas_contract ON raw_sagas (contract_id);
CREATE TABLE IF NOT EXISTS raw_outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id text NOT NULL UNIQUE, topic text NOT NULL,
    key text NOT NULL, type text NOT NULL, payload bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz);
CREATE INDEX IF NOT EXISTS raw_outbox_unsent ON raw_outbox (seq) WHERE sent_at IS NULL;
"""
INSERT_SAGA = """INSERT INTO raw_sagas (saga_id, kind, contract_id, status, step, data, created_at, updated_at)
                 VALUES ($1, 'fund', $2, 'running', 'charge', $3, now(), now())"""
INSERT_OUTBOX = """INSERT INTO raw_outbox (event_id, topic, key, type, payload)
                   VALUES ($1, 'billing.saga-commands', $2, 'ChargeClient', $3)"""
SAGA_DATA = json.dumps({"offer": True, "currency": "USD", "milestones": [{"milestone_id": "ms-1", "amount": 50_000}]})


async def _connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await conn.execute("SET synchronous_commit TO on")  # whatever the server's default, measure it durable
    return conn


async def _one_step(conn: asyncpg.Connection, steps: int = 1) -> None:
    async with conn.transaction():
        for _ in range(steps):
            saga_id = uuid.uuid4().hex
            await conn.execute(INSERT_SAGA, saga_id, f"contract-{saga_id[:12]}", SAGA_DATA)
            await conn.execute(INSERT_OUTBOX, saga_id, f"contract-{saga_id[:12]}", PAYLOAD)


async def _commit_loop(dsn: str, seconds: float, connections: int, steps_per_commit: int = 1) -> dict:
    conns = [await _connect(dsn) for _ in range(connections)]
    times: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(conn: asyncpg.Connection) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await _one_step(conn, steps_per_commit)
            times.append(time.perf_counter() - started)

    try:
        for conn in conns:  # warm the connections' statement caches
            await _one_step(conn, steps_per_commit)
        began = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        elapsed = time.perf_counter() - began
    finally:
        for conn in conns:
            await conn.close()
    return {"connections": connections, "steps_per_commit": steps_per_commit,
            "commits_per_second": round(len(times) / elapsed, 1),
            "steps_per_second": round(len(times) * steps_per_commit / elapsed, 1),
            "commit_ms": summary_ms(times)}


async def server_settings(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
                                ["fsync", "synchronous_commit", "wal_sync_method", "commit_delay", "shared_buffers",
                                 "server_version"])
        return {r["name"]: r["setting"] for r in rows}
    finally:
        await conn.close()


async def postgres_commits(dsn: str, seconds: float = 5.0, concurrency: tuple[int, ...] = (8, 32),
                           batch: int = 50) -> dict:
    """dsn: an asyncpg URL of a scratch database (its two tables are created here)."""
    conn = await _connect(dsn)
    try:
        await conn.execute(SCHEMA)
        await conn.execute("TRUNCATE raw_sagas, raw_outbox")
    finally:
        await conn.close()
    single = await _commit_loop(dsn, seconds, 1)
    concurrent = [await _commit_loop(dsn, seconds, n) for n in concurrency]
    batched = await _commit_loop(dsn, seconds, 1, steps_per_commit=batch)
    return {"step": "BEGIN; INSERT saga row; INSERT outbox row (~1 KB payload); COMMIT (synchronous_commit on)",
            "server": await server_settings(dsn), "single_connection": single, "concurrent": concurrent,
            "batched_single_connection": batched}
