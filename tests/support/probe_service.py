"""A tiny service built on the shared runtime alone, for integration tests of consuming and relaying.

It consumes RegisterAccount commands from its own topic, writes one `registrations` row per command
and announces AccountRegistered through the outbox. Names steer it: "poison" always raises, "hang"
touches PROBE_MARKER and blocks forever (while PROBE_HANG=1), so a test can kill it mid-batch.
Run in-process through `app(...)`, or as its own process: `python -m tests.support.probe_service`.
"""

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

from platform_runtime.context import HandlerContext
from platform_runtime.credentials import Credentials
from platform_runtime.dispatch import CommandDispatcher
from platform_runtime.service import ServiceDefinition, Subscription, build_runtime, create_app, serve
from platform_runtime.settings import ServiceSettings
from platform_runtime.tables import add_runtime_tables
from platform_schemas.commands.contracts import RegisterAccount
from platform_schemas.events.contracts import AccountRegistered
from sqlalchemy import Column, MetaData, String, Table, insert


class ProbeSettings(ServiceSettings):
    http_port: int = 0
    probe_name: str = "probe"
    probe_topic: str = "probe.commands"
    probe_events: str = "probe.events"
    probe_hang: bool = True
    probe_marker: str = ""


def definition(settings: ProbeSettings) -> ServiceDefinition:
    metadata = MetaData()
    add_runtime_tables(metadata)
    registrations = Table(
        "registrations", metadata,
        Column("account_id", String(64), primary_key=True),
        Column("name", String(200), nullable=False),
    )

    async def register(cmd: RegisterAccount, ctx: HandlerContext) -> None:
        uow = ctx.uow
        await uow.session.execute(insert(registrations).values(account_id=cmd.account_id, name=cmd.name))
        if cmd.name == "poison":
            raise RuntimeError(f"{cmd.account_id} is poison")
        if cmd.name == "hang" and settings.probe_hang:
            Path(settings.probe_marker).touch()
            await asyncio.sleep(3600)
        uow.publish(settings.probe_events, AccountRegistered(
            account_id=cmd.account_id, role=cmd.role, name=cmd.name, email=cmd.email), subject=cmd.account_id)

    dispatcher = CommandDispatcher(settings.probe_topic, {RegisterAccount: register}, settings.probe_events)
    return ServiceDefinition(
        name=settings.probe_name, metadata=metadata, settings_type=lambda: settings, migrations_dir=Path("."),
        subscriptions=lambda runtime: [Subscription(settings.probe_topic, dispatcher.dispatch)],
    )


def app(settings: ProbeSettings):
    probe = definition(settings)
    return create_app(probe, build_runtime(probe, settings))


if __name__ == "__main__":
    serve(definition(ProbeSettings()))


# -- scratch resources for integration tests ------------------------------------------------------


async def scratch_database(postgres_url: str, name: str) -> str:
    """A fresh, empty database; returns its SQLAlchemy URL."""
    import asyncpg

    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1).rstrip("/") + "/postgres"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{postgres_url.rstrip('/')}/{name}"


@asynccontextmanager
async def _fresh_database(postgres_url: str, label: str, **engine_options):
    """A database of its own (named after `label`) and an engine on it (not connected yet); both gone afterwards."""
    import uuid

    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.support.processes import DB_PREFIX

    name = f"{DB_PREFIX}it_{label}_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(postgres_url, name)
    engine = create_async_engine(url, **engine_options)
    try:
        yield url, engine
    finally:
        await engine.dispose()
        await drop_database(postgres_url, name)


@asynccontextmanager
async def migrated_engine(postgres_url: str, label: str, migrations_dir: Path):
    """An engine on a fresh database of its own (named after `label`), migrated to head; dropped afterwards."""
    from platform_runtime.migrate import upgrade

    async with _fresh_database(postgres_url, label) as (url, engine):
        await asyncio.to_thread(upgrade, migrations_dir, url)
        yield engine


@asynccontextmanager
async def runtime_tables_engine(postgres_url: str, label: str, **engine_options):
    """An engine on a fresh database of its own (named after `label`) holding the runtime's tables only (outbox,
    inbox, timers), and their MetaData: for tests of the runtime alone. Dropped afterwards."""
    metadata = MetaData()
    add_runtime_tables(metadata)
    async with _fresh_database(postgres_url, label, **engine_options) as (url, engine):
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        yield url, engine, metadata


class ServiceDatabase:
    """One service's migrated scratch database: an engine on it, the service's units of work on that engine, and
    what its tables hold (as tuples, for comparing two databases given the same work)."""

    def __init__(self, engine, metadata: MetaData, service: str) -> None:
        self.engine, self.metadata, self.service = engine, metadata, service
        self.url = engine.url.render_as_string(hide_password=False)

    def new_uow(self):
        from platform_runtime.clock import SystemClock
        from platform_runtime.relay import notify_channel
        from platform_runtime.unit_of_work import UnitOfWork

        return UnitOfWork(self.engine, self.metadata.tables, self.service, SystemClock(), notify_channel(self.service))

    async def rows(self, queries: dict[str, str], sort: bool = False) -> dict[str, list[tuple]]:
        """Each query's rows by its name, sorted if asked (for rows whose order the queries do not fix)."""
        import asyncpg
        from platform_runtime.relay import asyncpg_dsn

        conn = await asyncpg.connect(asyncpg_dsn(self.url))
        try:
            found = {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in queries.items()}
        finally:
            await conn.close()
        return {name: sorted(rows) for name, rows in found.items()} if sort else found


    async def statements_of(self, work) -> list[str]:
        """The text of every statement the engine's connections sent while `work()` ran (its pool renewed first,
        so that every connection is one opened with the listener)."""
        from sqlalchemy import event

        statements: list[str] = []

        def log_queries(connection, _):
            connection._connection.add_query_logger(lambda query: statements.append(query.query))

        event.listen(self.engine.sync_engine, "connect", log_queries)
        await self.engine.dispose()
        try:
            await work()
        finally:
            event.remove(self.engine.sync_engine, "connect", log_queries)
            await self.engine.dispose()
        return statements


def in_batches(items: list, sizes: list[int]) -> list[list]:
    """`items` in order, cut into consecutive batches of these sizes taken in turn (as a consumer's fetches may
    cut them), the last one what is left."""
    batches, start = [], 0
    while start < len(items):
        size = sizes[len(batches) % len(sizes)]
        batches.append(items[start:start + size])
        start += size
    return batches


@asynccontextmanager
async def migrated_databases(postgres_url: str, label: str, migrations_dir: Path, metadata: MetaData, service: str,
                             count: int):
    """`count` migrated scratch databases of one service (ServiceDatabase), dropped afterwards."""
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        yield [ServiceDatabase(await stack.enter_async_context(migrated_engine(postgres_url, label, migrations_dir)),
                               metadata, service) for _ in range(count)]


async def drop_database(postgres_url: str, name: str) -> None:
    import asyncpg

    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1).rstrip("/") + "/postgres"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def create_topics(kafka: Credentials, names: list[str], partitions: int = 1) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**kafka.kafka_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        while not set(names) <= set(await admin.list_topics()):
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def read_topic(kafka: Credentials, topic: str, count: int, timeout: float = 30.0):
    """The first `count` records of a topic (every partition, from the beginning), or fewer at the deadline."""
    import time

    from aiokafka import AIOKafkaConsumer

    # No group: every partition of the topic is ours, read from the beginning.
    consumer = AIOKafkaConsumer(topic, **kafka.kafka_options(), enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        records, deadline = [], time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def committed_offsets(kafka: Credentials, group: str) -> dict[int, int]:
    """The group's committed offset per partition (all topics it reads)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka.kafka_options())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
