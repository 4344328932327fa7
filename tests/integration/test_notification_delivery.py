"""Notifications against real PostgreSQL (its own migrated database), with a fake SMTP server.

The consumer's half (event -> rows, once) and the delivery loop's half (pending -> sent / retried /
failed, each change with its event in the outbox), with time moved by hand.
"""

import asyncio
import os
from datetime import date, datetime, timedelta, timezone
from functools import partial
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from notifications.adapters.mime import OutgoingMail
from notifications.adapters.tables import metadata, notifications
from notifications.adapters.templates import Templates
from notifications.bootstrap import definition
from notifications.domain.delivery import RetryPolicy
from notifications.adapters.repository import EMAILS_DUE_CHANNEL, Known, NotificationRepository
from notifications.domain.routing import Parties
from platform_runtime.listener import Listener
from notifications.service_layer.delivery import EmailDelivery, WorkSignal
from notifications.service_layer.context import Context
from notifications.service_layer.handlers import HANDLERS
from notifications.settings import TEMPLATES
from platform_runtime.clock import FrozenClock
from platform_runtime.dispatch import EventDispatcher
from platform_runtime.migrate import upgrade
from platform_runtime.relay import notify_channel
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import new_envelope
from platform_schemas.events.contracts import AccountRegistered, AccountSuspended
from tests.support.processes import recreate_databases

pytestmark = pytest.mark.integration
START = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
NAMES_WAIT = timedelta(seconds=45)  # not the default (30 s): the consumer is given it, not assumed
DATABASE = f"{os.environ.get('TEST_DB_PREFIX', 't_')}notifications_it"


class FakeSmtp:
    """Accepts every mail except those to `refusing` addresses, which fail with `error`; keeps each accepted mail
    as a reader parses it."""

    def __init__(self, error: Exception | None = None, delay: float = 0.0) -> None:
        self.sent: list[EmailMessage] = []
        self.refusing: set[str] = set()
        self.error = error or ConnectionRefusedError("SMTP server down")
        self.delay = delay
        self.batches: list[int] = []

    async def send_all(self, mails: list[OutgoingMail]) -> list[BaseException | None]:
        self.batches.append(len(mails))
        results: list[BaseException | None] = []
        for mail in mails:
            await asyncio.sleep(self.delay)
            message = BytesParser(policy=policy.default).parsebytes(mail.data)
            assert mail.recipients == [message["To"].addresses[0].addr_spec]
            if any(address in message["To"] for address in self.refusing):
                results.append(self.error)
            else:
                self.sent.append(message)
                results.append(None)
        return results


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra):
    url = infra.database_url(DATABASE)
    await recreate_databases(infra.postgres_url, [DATABASE])
    await asyncio.to_thread(upgrade, definition.migrations_dir, url)  # the real migrations, not create_all
    engine = create_async_engine(url)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


@pytest.fixture
def clock():
    return FrozenClock(START)


def unit_of_work(sessions, clock):
    engine = sessions.kw["bind"]  # the fixture's sessions are for reading; the unit of work takes the engine
    return lambda: UnitOfWork(engine, metadata.tables, "notifications", clock, notify_channel("notifications"))


async def consume(sessions, clock, *envelopes) -> None:
    """What the consumer does with a batch: one transaction, the dispatcher's inbox claim per event."""
    dispatcher = EventDispatcher(HANDLERS, partial(Context, templates=Templates(TEMPLATES), names_wait=NAMES_WAIT))
    async with unit_of_work(sessions, clock)() as uow:
        for envelope in envelopes:
            await dispatcher.dispatch(envelope, uow)
        await uow.commit()


def event(data, subject: str):
    return new_envelope(data, subject=subject, source="contracts", actor="admin:tests")


async def person(sessions, clock, account_id: str, suspended: bool = True):
    registered = event(AccountRegistered(account_id=account_id, role="client", name=f"Name {account_id}",
                                         email=f"{account_id}@example.test"), account_id)
    suspension = event(AccountSuspended(account_id=account_id, reason="Unpaid invoices", appealable=True), account_id)
    await consume(sessions, clock, registered, *([suspension] if suspended else []))
    return suspension


async def rows(sessions, account_id: str) -> dict[str, dict]:
    async with sessions() as session:
        found = await session.execute(select(notifications).where(notifications.c.account_id == account_id))
        return {r["channel"]: dict(r) for r in found.mappings()}


async def outbox_types(sessions) -> list[tuple[str, str]]:
    outbox = metadata.tables["outbox"]
    async with sessions() as session:
        return [(r.type, r.event_id) for r in await session.execute(select(outbox).order_by(outbox.c.seq))]


def delivery(sessions, clock, smtp, attempts: int = 3, workers: int = 1, batch_size: int = 50) -> EmailDelivery:
    return EmailDelivery(unit_of_work(sessions, clock), smtp,
                         RetryPolicy(attempts, timedelta(seconds=10), timedelta(seconds=15)), clock,
                         "Platform <n@example.test>", workers, poll_seconds=0.01, batch_size=batch_size)


async def test_saving_a_contract_answers_its_events_lookup_and_keeps_the_title_a_later_event_lacks(db, clock):
    for account_id, name in (("acc-cl", "Chloé Client"), ("acc-fr", "Fred Freelancer")):
        await consume(db, clock, event(AccountRegistered(account_id=account_id, role="client", name=name,
                                                         email=f"{account_id}@example.test"), account_id))
    offered = Parties("ct-1", "acc-cl", "acc-fr", "EUR", "Brand identity")
    async with unit_of_work(db, clock)() as uow:
        repo = NotificationRepository(uow.session)
        known = await repo.save_contract(offered, [("ms-1", "Logo", 50_000), ("ms-2", "Guide", 70_000)], "ms-2",
                                         ["administrators", "acc-cl", "acc-fr"])
        assert known == Known(offered, "Guide", {"acc-cl": "Chloé Client", "acc-fr": "Fred Freelancer"})
        # OfferFundingFailed carries no title: the one OfferSent gave is kept, and the lookup says so.
        again = await repo.save_contract(Parties("ct-1", "acc-cl", "acc-fr", "EUR", None), [], None, ["acc-cl"])
        assert again.parties == offered and again.milestone_title is None
        assert again.names == {"acc-cl": "Chloé Client", "acc-fr": "Fred Freelancer"}
        assert await repo.lookup("ct-1", "ms-1", []) == Known(offered, "Logo", again.names)
        await uow.commit()


async def test_a_batch_carrying_an_offer_before_the_registrations_of_its_parties_names_them(db, clock):
    """A fetched batch is partition by partition, and a registration travels under its account, a contract's events
    under the contract: the offer may come first. Its notification waits for the names, and the registrations later
    in the same batch (the same transaction) fill them in: nothing is held back."""
    from types import SimpleNamespace

    from notifications import bootstrap
    from platform_runtime.consumer import BatchProcessor
    from platform_schemas.events.contracts import MilestoneTerms, OfferSent
    from tests.support.fakes import FakeDeadLetters, record

    runtime = SimpleNamespace(new_context=partial(Context, templates=Templates(TEMPLATES), names_wait=NAMES_WAIT), settings=None)
    subscription = bootstrap.subscriptions(runtime)[0]  # contracts.events, as the service subscribes to it
    consumer = BatchProcessor(topic=subscription.topic, new_uow=unit_of_work(db, clock), dead_letters=FakeDeadLetters(),
                              max_attempts=3, backoff_seconds=0.01, **subscription.handling())
    offer = OfferSent(contract_id="ct-batch", client_id="acc-bcl", freelancer_id="acc-bfr", title="Brand identity",
                      currency="EUR", milestones=[MilestoneTerms(milestone_id="ms-b1", title="Logo", amount=50_000)],
                      deposit="first_milestone", deposited_amount=50_000)
    people = [AccountRegistered(account_id=account_id, role=role, name=name, email=f"{account_id}@example.test")
              for account_id, role, name in (("acc-bcl", "client", "Chloé Client"),
                                             ("acc-bfr", "freelancer", "Fred Freelancer"))]
    fetched = [record(event(offer, "ct-batch").to_json(), 0, topic=subscription.topic, partition=1),
               *(record(event(p, p.account_id).to_json(), offset, topic=subscription.topic, partition=0)
                 for offset, p in enumerate(people))]
    await consumer.process(fetched)
    email = (await rows(db, "acc-bfr"))["email"]
    assert email["subject"] == "New offer from Chloé Client: Brand identity"
    assert email["body_text"].startswith("Hi Fred Freelancer,")
    assert (email["awaiting_names"], email["next_attempt_at"]) == (None, START)  # due at once


async def test_an_event_gives_one_in_app_and_one_pending_email_however_often_it_arrives(db, clock):
    suspension = await person(db, clock, "acc-once")
    await consume(db, clock, suspension)
    await consume(db, clock, suspension, suspension)
    found = await rows(db, "acc-once")
    assert sorted(found) == ["email", "in_app"]
    assert (found["in_app"]["status"], found["email"]["status"]) == ("delivered", "pending")
    assert "Unpaid invoices" in found["email"]["body_text"] and "can be reversed" in found["email"]["body_text"]
    sent = [t for t in await outbox_types(db) if t[0] == "NotificationSent"]
    assert sent == [("NotificationSent", f"{found['in_app']['notification_id']}:sent")]


async def test_a_sent_email_is_marked_and_announced_in_the_same_transaction(db, clock):
    await person(db, clock, "acc-sent")
    smtp = FakeSmtp()
    while await delivery(db, clock, smtp).deliver_due():
        pass
    email = (await rows(db, "acc-sent"))["email"]
    assert (email["status"], email["attempts"]) == ("sent", 1)
    [message] = [m for m in smtp.sent if "acc-sent" in m["To"]]
    assert message["Message-ID"] == f"<{email['notification_id']}@notifications.escrow-platform>"
    assert message["Subject"] == email["subject"]
    assert ("NotificationSent", f"{email['notification_id']}:sent") in await outbox_types(db)


async def test_a_failing_email_backs_off_exponentially_then_is_failed_and_announced(db, clock):
    await person(db, clock, "acc-fail")
    smtp = FakeSmtp()
    smtp.refusing.add("acc-fail@")
    loop = delivery(db, clock, smtp, attempts=3)
    while await loop.deliver_due():
        pass
    email = (await rows(db, "acc-fail"))["email"]
    assert (email["status"], email["attempts"]) == ("pending", 1)
    assert email["next_attempt_at"] == START + timedelta(seconds=10)
    assert not await loop.deliver_due()  # not due yet
    clock.advance(timedelta(seconds=10))
    assert await loop.deliver_due()
    email = (await rows(db, "acc-fail"))["email"]
    assert (email["attempts"], email["next_attempt_at"]) == (2, clock.now() + timedelta(seconds=15))  # capped
    clock.advance(timedelta(seconds=15))
    assert await loop.deliver_due()
    email = (await rows(db, "acc-fail"))["email"]
    assert (email["status"], email["attempts"]) == ("failed", 3)
    assert "SMTP server down" in email["last_error"]
    assert ("NotificationFailed", f"{email['notification_id']}:failed") in await outbox_types(db)
    assert not await loop.deliver_due()


async def test_a_permanent_refusal_fails_at_once(db, clock):
    import smtplib

    await person(db, clock, "acc-refused")
    smtp = FakeSmtp(smtplib.SMTPRecipientsRefused({"acc-refused@example.test": (550, b"no such mailbox")}))
    smtp.refusing.add("acc-refused@")
    while await delivery(db, clock, smtp, attempts=8).deliver_due():
        pass
    email = (await rows(db, "acc-refused"))["email"]
    assert (email["status"], email["attempts"]) == ("failed", 1)


async def test_one_failing_address_does_not_hold_back_the_others(db, clock):
    for account_id in ("acc-down", "acc-fine-1", "acc-fine-2"):
        await person(db, clock, account_id)
    smtp = FakeSmtp()
    smtp.refusing.add("acc-down@")
    while await delivery(db, clock, smtp, attempts=8).deliver_due():
        pass
    assert (await rows(db, "acc-fine-1"))["email"]["status"] == "sent"
    assert (await rows(db, "acc-fine-2"))["email"]["status"] == "sent"
    assert (await rows(db, "acc-down"))["email"]["status"] == "pending"


async def test_two_instances_with_several_workers_send_each_email_exactly_once(db, clock):
    people = [f"acc-many-{i}" for i in range(24)]
    await asyncio.gather(*(person(db, clock, p) for p in people))
    smtp = FakeSmtp(delay=0.02)
    instances = [delivery(db, clock, smtp, workers=4) for _ in range(2)]
    tasks = [asyncio.create_task(i.run()) for i in instances]
    try:
        async with asyncio.timeout(60):
            while True:
                async with db() as session:
                    pending = await session.scalar(select(func.count()).select_from(notifications).where(
                        notifications.c.status == "pending", notifications.c.account_id.in_(people)))
                if pending == 0:
                    break
                await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    ids = [m["Message-ID"] for m in smtp.sent if any(f"{p}@" in m["To"] for p in people)]
    assert len(ids) == len(set(ids)) == len(people)


async def test_a_pass_sends_a_batch_over_one_hand_off_and_records_every_outcome_in_one_transaction(db, clock):
    people = [f"acc-batch-{i}" for i in range(5)]
    for account_id in people:
        await person(db, clock, account_id)
    smtp = FakeSmtp()
    smtp.refusing.add("acc-batch-2@")
    assert await delivery(db, clock, smtp, attempts=8).deliver_due() == len(people)
    assert smtp.batches == [len(people)]
    statuses = {p: (await rows(db, p))["email"] for p in people}
    assert {p: (e["status"], e["attempts"]) for p, e in statuses.items()} == {
        **{p: ("sent", 1) for p in people}, "acc-batch-2": ("pending", 1)}
    assert statuses["acc-batch-2"]["next_attempt_at"] == START + timedelta(seconds=10)
    announced = await outbox_types(db)
    for p in people:
        expected = ("NotificationSent", f"{statuses[p]['notification_id']}:sent")
        assert (expected in announced) == (p != "acc-batch-2")


async def test_a_pass_takes_at_most_its_batch_size_oldest_first(db, clock):
    people = [f"acc-bounded-{i}" for i in range(3)]
    for account_id in people:
        await person(db, clock, account_id)
        clock.advance(timedelta(milliseconds=1))
    smtp = FakeSmtp()
    loop = delivery(db, clock, smtp, batch_size=2)
    assert [await loop.deliver_due() for _ in range(3)] == [2, 1, 0]
    assert [m["To"].split("<")[1].split("@")[0] for m in smtp.sent] == people


async def test_an_email_without_a_known_address_waits_for_it(db, clock):
    """No registration seen: no name either, so the email first waits `names_wait` for it (untried), then is
    tried and kept pending for the address, like any retry."""
    suspension = event(AccountSuspended(account_id="acc-no-address", reason="Unpaid invoices", appealable=True),
                       "acc-no-address")
    await consume(db, clock, suspension)
    smtp = FakeSmtp()
    assert await delivery(db, clock, smtp).deliver_due() == 0  # waiting for the name
    clock.advance(NAMES_WAIT)
    assert await delivery(db, clock, smtp).deliver_due() == 1
    email = (await rows(db, "acc-no-address"))["email"]
    assert (email["status"], email["attempts"]) == ("pending", 1)
    assert "RecipientAddressUnknown" in email["last_error"] and smtp.batches == []


async def test_an_offer_handled_before_its_parties_registrations_is_named_when_they_come(db, clock):
    """Across batches nothing orders a registration (keyed by account) before a contract's event (keyed by the
    contract). The notification is written at once with stand-ins and waits for the names; each registration
    renders it again (in-app and email), and the email is due the moment its last name is known."""
    offer = offer_sent("ct-late", "acc-late-cl", "acc-late-fr")
    await consume(db, clock, event(offer, "ct-late"))
    found = await rows(db, "acc-late-fr")
    assert found["in_app"]["subject"] == "New offer from the client: Brand identity"
    assert found["email"]["body_text"].startswith("Hi there,")
    assert found["email"]["awaiting_names"] == ["acc-late-cl", "acc-late-fr"]
    assert found["email"]["next_attempt_at"] == START + NAMES_WAIT
    smtp = FakeSmtp()
    assert await delivery(db, clock, smtp).deliver_due() == 0

    await consume(db, clock, registered("acc-late-fr", "freelancer", "Fred Freelancer"))
    found = await rows(db, "acc-late-fr")
    assert found["email"]["body_text"].startswith("Hi Fred Freelancer,")
    assert found["email"]["subject"] == "New offer from the client: Brand identity"
    assert (found["email"]["awaiting_names"], found["email"]["next_attempt_at"]) == (["acc-late-cl"], START + NAMES_WAIT)
    assert await delivery(db, clock, smtp).deliver_due() == 0  # still one name to wait for

    await consume(db, clock, registered("acc-late-cl", "client", "Chloé Client"))
    for channel, row in (await rows(db, "acc-late-fr")).items():
        assert row["subject"] == "New offer from Chloé Client: Brand identity", channel
        assert (row["awaiting_names"], row["render_values"]) == (None, None), channel
    email = (await rows(db, "acc-late-fr"))["email"]
    assert "Chloé Client" in email["body_html"] and email["next_attempt_at"] == START  # due now
    assert await delivery(db, clock, smtp).deliver_due() == 1
    [message] = smtp.sent
    assert message["Subject"] == "New offer from Chloé Client: Brand identity"
    # Word for word what it would have said had every name been known at once (its values kept through JSON).
    at_once = await rendered_at_once(db, clock, "acc-late-fr")
    assert (email["body_text"], email["body_html"]) == (at_once["body_text"], at_once["body_html"])


async def test_an_email_whose_names_never_come_leaves_after_the_wait_with_the_stand_ins(db, clock):
    await consume(db, clock, registered("acc-known-fr", "freelancer", "Fred Known"))
    await consume(db, clock, event(offer_sent("ct-never", "acc-never-cl", "acc-known-fr"), "ct-never"))
    smtp = FakeSmtp()
    assert await delivery(db, clock, smtp).deliver_due() == 0
    clock.advance(NAMES_WAIT)
    assert await delivery(db, clock, smtp).deliver_due() == 1
    [message] = smtp.sent
    assert message["Subject"] == "New offer from the client: Brand identity"
    email = (await rows(db, "acc-known-fr"))["email"]
    assert (email["status"], email["awaiting_names"]) == ("sent", ["acc-never-cl"])
    # Registered after all: the in-app notification names them; the sent email's record stays what was sent.
    await consume(db, clock, registered("acc-never-cl", "client", "Carl Late"))
    found = await rows(db, "acc-known-fr")
    assert found["in_app"]["subject"] == "New offer from Carl Late: Brand identity"
    assert (found["email"]["subject"], found["email"]["body_text"]) == (email["subject"], email["body_text"])


def offer_sent(contract_id: str, client_id: str, freelancer_id: str):
    from platform_schemas.events.contracts import MilestoneTerms, OfferSent

    return OfferSent(contract_id=contract_id, client_id=client_id, freelancer_id=freelancer_id,
                     title="Brand identity", currency="EUR", deposit="first_milestone", deposited_amount=50_000,
                     milestones=[MilestoneTerms(milestone_id=f"{contract_id}-m1", title="Logo", amount=50_000,
                                                due_date=date(2027, 1, 15))])


def registered(account_id: str, role: str, name: str):
    return event(AccountRegistered(account_id=account_id, role=role, name=name, email=f"{account_id}@example.test"),
                 account_id)


async def rendered_at_once(db, clock, freelancer_id: str) -> dict:
    """The same offer to the same people, every name known when it is handled: what the late one must read."""
    await consume(db, clock, event(offer_sent("ct-at-once", "acc-late-cl", freelancer_id), "ct-at-once"))
    async with db() as session:
        found = await session.execute(select(notifications).where(
            notifications.c.contract_id == "ct-at-once", notifications.c.channel == "email"))
        row = dict(found.mappings().one())
    return {part: row[part].replace("ct-at-once", "ct-late") for part in ("body_text", "body_html")}


async def test_an_inserted_email_wakes_a_listening_delivery_loop_at_commit(db, clock, infra):
    woken = asyncio.Event()
    listener = Listener(infra.database_url(DATABASE), EMAILS_DUE_CHANNEL, lambda _payload: woken.set())
    task = asyncio.create_task(listener.run())
    try:
        async with asyncio.timeout(30):
            await woken.wait()  # the first call: on listening (what was committed before)
        woken.clear()
        await person(db, clock, "acc-wake", suspended=False)
        await asyncio.sleep(0.3)
        assert not woken.is_set()  # an event that gives no email announces nothing
        await person(db, clock, "acc-wake-2")
        async with asyncio.timeout(30):
            await woken.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_one_announcement_wakes_one_idle_worker_and_is_kept_while_all_are_busy():
    signal = WorkSignal()
    waiters = [asyncio.create_task(signal.wait(30)) for _ in range(3)]
    await asyncio.sleep(0)
    signal.announce()
    await asyncio.sleep(0.05)
    assert sum(w.done() for w in waiters) == 1
    signal.announce()
    signal.announce()
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    signal.announce()  # nobody waits: kept for the next one
    await asyncio.wait_for(signal.wait(30), 1)
