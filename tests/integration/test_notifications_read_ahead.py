"""A batch's lookups read ahead and its notifications written together, on real PostgreSQL (issue 10, thirty-sixth
step): notifications reads what a fetched batch's events may look up in one statement (adapters/projection.py),
answers each event's lookup from it as the batch's own projections change it, and leaves the projections' saves and
the notification rows for later, a batch's rows one statement.

What must hold: whatever the events (people registered before or after the contracts that name them, in the same
batch or not, a contract offered twice, an OfferFundingFailed without a title, milestones added and edited, events
naming only their contract, an event delivered twice), handled in batches through the consumer they leave exactly
the rows and the outbox that the same events leave handled one a batch, each looking up the database.
"""

import uuid
from datetime import datetime, timedelta, timezone
from functools import partial
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
from platform_schemas.events.contracts import (
    AccountRegistered, AccountSuspended, MilestoneAdded, MilestoneEdited, MilestoneFundingFailed, MilestoneTerms,
    OfferFundingFailed, OfferSent, RefundRequested,
)
from platform_schemas.topics import CONTRACTS_EVENTS

from notifications import bootstrap
from notifications.adapters.tables import metadata
from notifications.adapters.templates import Templates
from notifications.bootstrap import definition
from notifications.service_layer.context import Context
from notifications.settings import TEMPLATES
from tests.support.fakes import FakeDeadLetters, record
from tests.support.probe_service import ServiceDatabase, in_batches, migrated_databases

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)

# Every row the events leave, in an order that does not depend on the order they were written in.
TABLES = {
    "notifications": "SELECT notification_id, event_id, event_type, kind, account_id, channel, contract_id, subject,"
                     " body_text, body_html, status, next_attempt_at, created_at, delivered_at, awaiting_names,"
                     " render_values::text FROM notifications",
    "contracts": "SELECT contract_id, client_id, freelancer_id, currency, title FROM contracts",
    "milestones": "SELECT milestone_id, contract_id, title, amount FROM milestones",
    "accounts": "SELECT account_id, role, name, email FROM accounts",
    "outbox": "SELECT topic, key, type, event_id, payload FROM outbox",
    "inbox": "SELECT message_id, status FROM processed_messages",
}


class Notifications(ServiceDatabase):
    """A notifications database and the service's consumer of contracts.events on it, on a frozen clock."""

    def __init__(self, engine) -> None:
        super().__init__(engine, metadata, "notifications")
        wiring = SimpleNamespace(new_context=partial(Context, templates=Templates(TEMPLATES),
                                                     names_wait=timedelta(seconds=30)), settings=None)
        [self.subscription] = [s for s in bootstrap.subscriptions(wiring) if s.topic == CONTRACTS_EVENTS]
        self.dead_letters = FakeDeadLetters()
        self.consumer = BatchProcessor(topic=CONTRACTS_EVENTS, new_uow=self.new_uow, dead_letters=self.dead_letters,
                                       max_attempts=2, backoff_seconds=0.01, **self.subscription.handling())

    def new_uow(self):
        clock = FrozenClock(NOW)
        return UnitOfWork(self.engine, metadata.tables, "notifications", clock, notify_channel("notifications"))

    async def handle(self, envelopes: list[Envelope]) -> None:
        """One fetched batch, as the consumer handles it."""
        await self.consumer.process([record(e.to_json(), offset, topic=CONTRACTS_EVENTS, key=e.subject.encode())
                                     for offset, e in enumerate(envelopes)])
        assert not self.dead_letters.sent

    async def empty(self) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(self.url))
        try:
            await conn.execute("TRUNCATE notifications, contracts, milestones, accounts, processed_messages, outbox")
        finally:
            await conn.close()

    async def left(self) -> dict[str, list[tuple]]:
        return await self.rows(TABLES, sort=True)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def databases(infra):
    """Two notifications databases: one given the events in batches, one given them one a batch."""
    async with migrated_databases(infra.postgres_url, "ahead", definition.migrations_dir, metadata, "notifications",
                                  2) as found:
        yield [Notifications(db.engine) for db in found]


def _envelope(data, subject: str) -> Envelope:
    return new_envelope(data, subject=subject, source="contracts", actor="system")


PEOPLE = ["acc-a", "acc-b", "acc-c", "acc-d"]
CONTRACTS = ["ct-1", "ct-2", "ct-3"]
MILESTONES = ["ms-1", "ms-2", "ms-3", "ms-4"]
TITLES = st.sampled_from(["Logo", "Guide", "Site"])


def _registered(account_id: str, name: str) -> Envelope:
    return _envelope(AccountRegistered(account_id=account_id, role="client", name=name,
                                       email=f"{account_id}@example.test"), account_id)


def _offered(contract_id, client_id, freelancer_id, title, milestones) -> Envelope:
    terms = [MilestoneTerms(milestone_id=m, title=t, amount=a) for m, t, a in milestones]
    return _envelope(OfferSent(contract_id=contract_id, client_id=client_id, freelancer_id=freelancer_id, title=title,
                               currency="EUR", milestones=terms, deposit="first_milestone",
                               deposited_amount=terms[0].amount), contract_id)


def _funding_failed(contract_id, client_id, freelancer_id, title) -> Envelope:
    return _envelope(OfferFundingFailed(contract_id=contract_id, client_id=client_id, freelancer_id=freelancer_id,
                                        currency="EUR", amount=100, reason_code="card_declined", message="Declined",
                                        title=title), contract_id)


def _milestone(kind, contract_id, milestone_id, title) -> Envelope:
    return _envelope(kind(contract_id=contract_id, milestone_id=milestone_id, title=title, amount=700,
                          currency="EUR"), contract_id)


def _milestone_funding_failed(contract_id, milestone_id) -> Envelope:
    return _envelope(MilestoneFundingFailed(contract_id=contract_id, milestone_id=milestone_id, amount=700,
                                            currency="EUR", reason_code="card_declined", message="Declined"),
                     contract_id)


def _refund_requested(contract_id, milestone_id, freelancer_id) -> Envelope:
    return _envelope(RefundRequested(contract_id=contract_id, milestone_id=milestone_id, freelancer_id=freelancer_id,
                                     amount=700, currency="EUR", respond_by=NOW + timedelta(days=3)), contract_id)


def _suspended(account_id) -> Envelope:
    return _envelope(AccountSuspended(account_id=account_id, reason="Unpaid", appealable=True), account_id)


people, contracts, milestones = (st.sampled_from(ids) for ids in (PEOPLE, CONTRACTS, MILESTONES))
EVENTS = st.one_of(
    st.builds(_registered, people, st.sampled_from(["Ada", "Bo", "Cy"])),
    st.builds(_offered, contracts, people, people, TITLES,
              st.lists(st.tuples(milestones, TITLES, st.integers(1, 10_000)), min_size=1, max_size=2)),
    st.builds(_funding_failed, contracts, people, people, st.none() | TITLES),
    st.builds(_milestone, st.sampled_from([MilestoneAdded, MilestoneEdited]), contracts, milestones, TITLES),
    st.builds(_milestone_funding_failed, contracts, milestones),
    st.builds(_refund_requested, contracts, milestones, people),
    st.builds(_suspended, people),
)


@st.composite
def histories(draw):
    """Events handled before, one a batch in both databases; then the events under test, some delivered twice (a
    redelivery, in the same batch or a later one), and the sizes of the batches they are fetched in."""
    before = draw(st.lists(EVENTS, max_size=4))
    events = draw(st.lists(EVENTS, min_size=2, max_size=12))
    for _ in range(draw(st.integers(0, 2))):
        events.insert(draw(st.integers(0, len(events))), draw(st.sampled_from(events)))
    sizes = draw(st.lists(st.integers(2, 6), min_size=1, max_size=6))
    return before, events, sizes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories())
async def test_events_handled_in_batches_leave_what_they_leave_one_a_batch(databases, history):
    before, events, sizes = history
    handled_in_batches, one_a_batch = databases
    for database in databases:
        await database.empty()
        for envelope in before:
            await database.handle([envelope])
    for envelope in events:
        await one_a_batch.handle([envelope])
    for batch in in_batches(events, sizes):
        await handled_in_batches.handle(batch)
    assert await handled_in_batches.left() == await one_a_batch.left()


async def test_a_batch_of_offers_is_looked_up_in_one_statement_and_its_notifications_inserted_in_one(databases):
    """Twenty offers between registered people: the claims, the read ahead, the contracts' saves pipelined, one
    insert of every notification, and the commit's statement. No lookup of its own for any offer."""
    database = databases[0]
    await database.empty()
    await database.handle([_registered(p, f"Name {p}") for p in PEOPLE])
    offers = [_offered(f"ct-{uuid.uuid4().hex[:8]}", "acc-a", "acc-b", "Site", [("ms-x", "Logo", 5)])
              for _ in range(20)]
    statements = await database.statements_of(lambda: database.handle(offers))
    lookups = [s for s in statements if "FROM (SELECT 1) AS one" in s or "FROM saved_contract c" in s]
    inserts = [s for s in statements if "INSERT INTO notifications" in s]
    reads_ahead = [s for s in statements if "'contract' AS what" in s]
    assert (len(lookups), len(inserts), len(reads_ahead)) == (0, 1, 1), statements
    left = await database.left()
    assert len([n for n in left["notifications"] if n[3] == "offer_received"]) == 40  # email and in-app, each
    assert all("Name acc-a" in n[7] for n in left["notifications"] if n[3] == "offer_received")


async def test_rows_there_already_take_the_batch_back_and_it_is_handled_again_one_event_each(databases):
    """An event redelivered after its inbox row was pruned finds its notifications there: the batch's insert,
    taken for granted, is taken back, and the batch handled again with each event's insert answered; nothing is
    announced twice."""
    database = databases[0]
    await database.empty()
    await database.handle([_registered(p, f"Name {p}") for p in PEOPLE])
    batch = [_suspended("acc-a"), _suspended("acc-b")]
    await database.handle(batch)
    first = await database.left()
    conn = await asyncpg.connect(asyncpg_dsn(database.url))
    try:
        await conn.execute("DELETE FROM processed_messages WHERE message_id = ANY($1::text[])", [e.id for e in batch])
    finally:
        await conn.close()
    redone = metrics.BATCHES_REDONE.labels(CONTRACTS_EVENTS)
    redone_before = redone._value.get()
    await database.handle(batch)
    assert redone._value.get() == redone_before + 1
    again = await database.left()
    assert (again["notifications"], again["outbox"]) == (first["notifications"], first["outbox"])
