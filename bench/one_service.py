"""What the one-service CPU tools share (`bench.contracts_cpu`, `bench.escrow_cpu`, `bench.notifications_cpu`,
`bench.billing_cpu`): a scratch database on the server POSTGRES_URL names, the CPU of its backends (the server's side
of the tool's work), running the work as a service runs its own, and what a bare round trip to the server and an
empty transaction cost (issue 10, thirty-seventh step)."""

import os
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import uvloop
from platform_runtime import metrics
from platform_runtime.consumer import BatchProcessor
from platform_runtime.heap import freeze_what_started
from platform_runtime.relay import asyncpg_dsn

from tests.infra import with_local_superuser_password
from tests.support.fakes import FakeDeadLetters
from tests.support.probe_service import drop_database, scratch_database

from .stats import process_cpu_seconds


def run_as_a_service(work: Coroutine) -> None:
    """A tool's work run as a service runs its own: on uvloop (the services' default `event_loop`), with what is
    alive at the start frozen out of the collector's full passes (platform_runtime/heap.py). Until the thirty-sixth
    step of issue 10 the tools ran on asyncio's own loop with the heap as it came; how much that moved their figures
    was not measured (three runs of bench.notifications_cpu each way were within each other's spread)."""
    freeze_what_started()
    uvloop.run(work)


@asynccontextmanager
async def scratch(tool: str) -> AsyncIterator[str]:
    """A fresh database for one run of `tool` (its SQLAlchemy URL), dropped afterwards: not one of the benchmark's
    databases to report on."""
    base = with_local_superuser_password(os.environ["POSTGRES_URL"]).rstrip("/")
    name = f"bench_{tool}_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(base, name)
    try:
        yield url
    finally:
        await drop_database(base, name)


async def backends_cpu_seconds(dsn: str) -> float | None:
    """The CPU seconds so far of the server's backends connected to `dsn`'s database (a tool's pool), or None when
    none of them is a process of this machine (a server elsewhere). A backend that has just ended is left out.
    Read around a tool's phase."""
    conn = await asyncpg.connect(dsn)
    try:
        pids = [r["pid"] for r in await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
    finally:
        await conn.close()
    seconds = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().startswith("postgres"):
                seconds.append(process_cpu_seconds(pid))
        except OSError:
            pass  # not a process here, or one that has just ended
    return sum(seconds) if seconds or not pids else None


@dataclass(frozen=True)
class RoundTrip:
    """What one bare round trip to the server costs here (a prepared `SELECT 1`, answered): the floor of every
    statement a message runs, whatever the statement does."""

    client_us: float  # this process's CPU, microseconds a round trip (asyncpg, the loop, the socket's system calls)
    server_us: float | None  # its backend's (None: a server elsewhere)


async def _cpu_us_each(call, times: int) -> float:
    """This process's CPU, microseconds, for each of `times` awaited calls."""
    started = time.process_time()
    for _ in range(times):
        await call()
    return (time.process_time() - started) / times * 1e6


async def round_trip(dsn: str, trips: int = 3000) -> RoundTrip:
    """Measure `RoundTrip` over `trips` round trips on a connection of its own (the first hundred not counted)."""
    conn = await asyncpg.connect(dsn)
    try:
        one = await conn.prepare("SELECT 1")
        await _cpu_us_each(one.fetchval, 100)
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        here = Path(f"/proc/{backend}").exists()
        server_before = process_cpu_seconds(backend) if here else None
        client_us = await _cpu_us_each(one.fetchval, trips)
        server_us = (process_cpu_seconds(backend) - server_before) / trips * 1e6 if here else None
    finally:
        await conn.close()
    return RoundTrip(client_us, server_us)


@dataclass(frozen=True)
class EmptyTransaction:
    """What a transaction with nothing in it costs this process: through a unit of work (its pooled connection,
    SQLAlchemy's begin and commit) and on a bare asyncpg connection (the BEGIN and COMMIT round trips alone)."""

    unit_of_work_us: float
    asyncpg_us: float


async def empty_transaction(new_uow, dsn: str, transactions: int = 2000) -> EmptyTransaction:
    """Measure `EmptyTransaction` over `transactions` of each kind (the first fifty not counted)."""
    async def through_a_unit_of_work() -> None:
        async with new_uow() as uow:
            await uow.driver()  # begins it, as the first statement of a message would
            await uow.commit()

    conn = await asyncpg.connect(dsn)

    async def on_asyncpg() -> None:
        await conn.execute("BEGIN")
        await conn.execute("COMMIT")

    spent = []
    try:
        for one in (through_a_unit_of_work, on_asyncpg):
            await _cpu_us_each(one, 50)
            spent.append(await _cpu_us_each(one, transactions))
    finally:
        await conn.close()
    return EmptyTransaction(*spent)


def consumer(subscriptions, wiring, topic: str, new_uow) -> tuple[BatchProcessor, FakeDeadLetters]:
    """The service's consumer of `topic` as its bootstrap wires it (`subscriptions(wiring)`), on these units of work,
    with the dead letters it would send kept."""
    dead_letters = FakeDeadLetters()
    [subscription] = [s for s in subscriptions(wiring) if s.topic == topic]
    return BatchProcessor(topic, new_uow=new_uow, dead_letters=dead_letters, max_attempts=2, backoff_seconds=0.01,
                          **subscription.handling()), dead_letters


@dataclass(frozen=True)
class Measured:
    service_seconds: float  # the tool's process's CPU over the measured batches
    database_seconds: float | None  # its database's backends' over the same (None: a server elsewhere)
    redone: float  # batches handled again (IsolationNeeded): a tool refuses such a run
    empty: EmptyTransaction  # measured after the batches, on the consumer's own units of work


def machinery(empty: EmptyTransaction, transactions_each: float, cpu_ms_each: float, each: str) -> str:
    """The line a tool prints under its figure: what the unit of work's own machinery (beyond its BEGIN and COMMIT
    round trips) costs an item of `transactions_each` transactions, and its share of `cpu_ms_each`, the tool's CPU
    an item (`each` names the item: a hold, a saga)."""
    own_us = (empty.unit_of_work_us - empty.asyncpg_us) * transactions_each
    one = f"{'an' if each[0] in 'aeiou' else 'a'} {each}"  # "a hold", "an offer"
    return (f"  an empty transaction: {empty.unit_of_work_us:.0f} us of this process through a unit of work, "
            f"{empty.asyncpg_us:.0f} us on asyncpg alone; the unit of work's own {own_us:.0f} us {one} "
            f"({transactions_each:.2f} transactions {one})"
            + (f", {own_us / 1000 / cpu_ms_each:.0%} of the CPU {one} above" if cpu_ms_each > 0 else ""))


async def measure_batches(processor: BatchProcessor, records: list, batch: int, url: str,
                          empty_transactions: int = 2000) -> Measured:
    """The records handed to the consumer `batch` at a time, the first batch not counted (the pool's connections
    and its statements prepared): what each side spent on the others."""
    redone = metrics.BATCHES_REDONE.labels(records[0].topic)
    await processor.process(records[:batch])
    redone_before = redone._value.get()
    database_before, spent = await backends_cpu_seconds(asyncpg_dsn(url)), 0.0
    for i in range(batch, len(records), batch):
        started = time.process_time()
        await processor.process(records[i:i + batch])
        spent += time.process_time() - started
    database_after = await backends_cpu_seconds(asyncpg_dsn(url))
    counted = database_before is not None and database_after is not None
    redone_now = redone._value.get() - redone_before
    empty = await empty_transaction(processor.new_uow, asyncpg_dsn(url), empty_transactions)
    return Measured(spent, database_after - database_before if counted else None, redone_now, empty)
