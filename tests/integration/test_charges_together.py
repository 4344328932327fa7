"""A batch's ChargeClient steps recorded together, on real PostgreSQL (issue 10, thirty-sixth step): billing reads the
primary billing methods of a batch's clients in one statement and records the batch's charges as one statement a
run (adapters/charges_together.py), where each step used to record its charge in a statement of its own.

What must hold: whatever the steps (clients with and without a primary method, a step sent again under a new
message id, a client's method changed since the read), handled in batches through billing's consumer they leave
exactly the charges, streaks and events that the same steps leave handled one a batch.
"""

import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from platform_runtime import metrics
from platform_runtime.clock import FrozenClock
from platform_runtime.consumer import BatchProcessor
from platform_runtime.relay import asyncpg_dsn, notify_channel
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope, new_envelope
from platform_schemas.commands.saga import ChargeClient, MilestoneAmount
from platform_schemas.topics import BILLING_SAGA_COMMANDS

from billing import bootstrap
from billing.adapters import charges_together
from billing.adapters.tables import metadata
from billing.bootstrap import definition
from billing.service_layer.context import BillingContexts
from billing.settings import BillingSettings
from tests.support.fakes import FakeDeadLetters, record
from tests.support.probe_service import ServiceDatabase, in_batches, migrated_databases

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
CLIENTS = ["cl-a", "cl-b", "cl-c", "cl-d"]

TABLES = {
    "charges": "SELECT charge_id, saga_id, contract_id, client_id, billing_method_id, amount, currency, purpose,"
               " milestones::text, status, created_at, next_attempt_at, reason_code, message, attempts, settled_at"
               " FROM charges",
    "streaks": "SELECT * FROM client_charge_streaks",
    "inbox": "SELECT message_id, status FROM processed_messages",
}


class Billing(ServiceDatabase):
    """A billing database and the service's consumer of its saga steps on it, on a frozen clock."""

    def __init__(self, engine) -> None:
        super().__init__(engine, metadata, "billing")
        settings = BillingSettings(database_url=self.url, http_port=0)
        wiring = SimpleNamespace(new_context=BillingContexts(settings, gateway=None), settings=settings)
        [subscription] = [s for s in bootstrap.subscriptions(wiring) if s.topic == BILLING_SAGA_COMMANDS]
        self.dead_letters = FakeDeadLetters()
        self.consumer = BatchProcessor(topic=BILLING_SAGA_COMMANDS, new_uow=self.new_uow,
                                       dead_letters=self.dead_letters, max_attempts=2, backoff_seconds=0.01,
                                       **subscription.handling())

    def new_uow(self):
        return UnitOfWork(self.engine, metadata.tables, "billing", FrozenClock(NOW), notify_channel("billing"))

    async def handle(self, envelopes: list[Envelope]) -> None:
        await self.consumer.process([record(e.to_json(), offset, topic=BILLING_SAGA_COMMANDS, key=e.subject.encode())
                                     for offset, e in enumerate(envelopes)])
        assert not self.dead_letters.sent

    async def sql(self, statement: str, *args) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(self.url))
        try:
            await conn.execute(statement, *args)
        finally:
            await conn.close()

    async def start(self, with_method: list[str]) -> None:
        """No charges, no messages; these clients with a primary card, the others with none."""
        await self.sql("TRUNCATE charges, client_charge_streaks, billing_methods, processed_messages, outbox")
        for client in with_method:
            await self.sql("INSERT INTO billing_methods (billing_method_id, account_id, kind, token, is_primary,"
                           " added_at) VALUES ($1, $2, 'card', 'tok', true, $3)", f"bm-{client}", client, NOW)

    async def left(self) -> dict[str, list[tuple]]:
        found = await self.rows({**TABLES, "events": "SELECT type, key, payload FROM outbox"}, sort=True)
        # An event's own id is new in each database; what it says is compared.
        found["events"] = sorted((type_, key, Envelope.model_validate_json(payload).data.__repr__())
                                 for type_, key, payload in found["events"])
        return found


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def databases(infra):
    """Two billing databases: one given the steps in batches, one given them one a batch."""
    async with migrated_databases(infra.postgres_url, "charges", definition.migrations_dir, metadata, "billing",
                                  2) as found:
        yield [Billing(db.engine) for db in found]


def step(charge: str, client: str, amounts: list[int]) -> Envelope:
    """A fund saga's ChargeClient, as contracts sends it: a message id of its own, so a step sent again (the same
    charge id) is a new message."""
    command = ChargeClient(charge_id=f"{charge}:charge", saga_id=charge, contract_id=f"ct-{charge}", client_id=client,
                           amount=sum(amounts), currency="USD", description="Milestone deposit",
                           milestones=[MilestoneAmount(milestone_id=f"m{i}", amount=a) for i, a in enumerate(amounts)])
    return new_envelope(command, subject=command.contract_id, actor="system", source="contracts")


STEPS = st.builds(step, st.sampled_from([f"s{n}" for n in range(12)]), st.sampled_from(CLIENTS),
                  st.lists(st.integers(1, 10**9), min_size=1, max_size=3))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(with_method=st.lists(st.sampled_from(CLIENTS), unique=True), before=st.lists(STEPS, max_size=3),
       steps=st.lists(STEPS, min_size=2, max_size=12), sizes=st.lists(st.integers(2, 6), min_size=1, max_size=4))
async def test_steps_handled_in_batches_leave_what_they_leave_one_a_batch(databases, with_method, before, steps,
                                                                          sizes):
    handled_in_batches, one_a_batch = databases
    for database in databases:
        await database.start(with_method)
        for envelope in before:
            await database.handle([envelope])
    for envelope in steps:
        await one_a_batch.handle([envelope])
    for batch in in_batches(steps, sizes):
        await handled_in_batches.handle(batch)
    assert await handled_in_batches.left() == await one_a_batch.left()


async def test_a_batch_of_steps_reads_the_methods_in_one_statement_and_records_its_charges_in_one(databases):
    """Twenty steps of clients with a primary card. (A client without one has its charge failed at once, in a
    statement that reads: the charges before it are written first, as the property above covers.)"""
    database = databases[0]
    await database.start(CLIENTS)
    steps = [step(f"one-{uuid.uuid4().hex[:8]}", CLIENTS[n % 4], [500]) for n in range(20)]
    statements = await database.statements_of(lambda: database.handle(steps))
    inserts = [s for s in statements if "INSERT INTO charges" in s]
    reads = [s for s in statements if "LEFT JOIN billing_methods m" in s]
    assert (len(inserts), len(reads)) == (1, 1), statements
    left = await database.left()
    assert len(left["charges"]) == 20 and {row[4] for row in left["charges"]} == {f"bm-{c}" for c in CLIENTS}


async def test_a_method_changed_since_the_read_takes_the_batch_back_and_each_charge_goes_to_the_primary_then(
        databases, monkeypatch):
    database = databases[0]
    await database.start(CLIENTS)
    read = charges_together.primary_methods

    async def stale(session, client_ids):  # as if the method changed between the read and the insert
        return {**(await read(session, client_ids)), "cl-a": "bm-old"}

    monkeypatch.setattr(charges_together, "primary_methods", stale)
    redone = metrics.BATCHES_REDONE.labels(BILLING_SAGA_COMMANDS)
    redone_before = redone._value.get()
    await database.handle([step("chg-1", "cl-a", [100]), step("chg-2", "cl-b", [200])])
    assert redone._value.get() == redone_before + 1
    charges = {row[0]: row[4] for row in (await database.left())["charges"]}
    assert charges == {"chg-1:charge": "bm-cl-a", "chg-2:charge": "bm-cl-b"}
