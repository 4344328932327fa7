"""Notifications' own CPU per fund saga's offer, in one process, on a real PostgreSQL and no broker.

`python -m bench.notifications_cpu [--offers N] [--batch B]` creates a scratch database (POSTGRES_URL, as the
superuser), registers a hundred clients and a hundred freelancers, then hands N OfferSent events, as Kafka records,
to notifications' consumer of contracts.events as its bootstrap wires it, B records a batch (1: a low rate's shape;
100 or more: a burst's). Each offer projects its contract and gives its freelancer an email and an in-app
notification. It counts notifications' CPU (time.process_time) around the batches only, and, when the server runs
on this machine, the CPU of the database's backends over the same offers: the before/after figure for a change to
the consumer's path (issue 10, thirty-sixth step: a batch's lookups read ahead, its notifications one insert).
"""

import argparse
import uuid
from datetime import datetime, timezone
from functools import partial
from types import SimpleNamespace

from platform_runtime.clock import FrozenClock
from platform_runtime.service import build_runtime
from platform_schemas import new_envelope
from platform_schemas.events.contracts import AccountRegistered, MilestoneTerms, OfferSent
from platform_schemas.topics import CONTRACTS_EVENTS

from bench.one_service import consumer, machinery, measure_batches, run_as_a_service, scratch
from tests.support.fakes import record

from notifications.adapters.templates import Templates
from notifications.bootstrap import definition, subscriptions
from notifications.service_layer.context import Context
from notifications.settings import NotificationsSettings

PEOPLE = 100  # clients, and as many freelancers


def events(offers: int) -> list:
    """The people's registrations, then fund sagas' offers of two milestones between them."""
    people = [AccountRegistered(account_id=f"{role}-{i}", role=role, name=f"Name {role} {i}",
                                email=f"{role}-{i}@example.test")
              for i in range(PEOPLE) for role in ("client", "freelancer")]
    offered = [OfferSent(contract_id=f"c-{uuid.uuid4().hex[:12]}", client_id=f"client-{i % PEOPLE}",
                         freelancer_id=f"freelancer-{(i * 7) % PEOPLE}", title="Brand identity", currency="USD",
                         milestones=[MilestoneTerms(milestone_id=f"m-{uuid.uuid4().hex[:12]}", title="Logo",
                                                    amount=5_000),
                                     MilestoneTerms(milestone_id=f"m-{uuid.uuid4().hex[:12]}", title="Guide",
                                                    amount=7_000)],
                         deposit="first_milestone", deposited_amount=5_000) for i in range(offers)]
    return [new_envelope(e, subject=getattr(e, "contract_id", None) or e.account_id, actor="system",
                         source="contracts") for e in (*people, *offered)]


async def measure(url: str, offers: int, batch: int) -> dict:
    """Notifications' and its database's CPU seconds for these offers, and the rows they left."""
    settings = NotificationsSettings(database_url=url, http_port=0)
    runtime = build_runtime(definition, settings, FrozenClock(datetime.now(timezone.utc)))
    async with runtime.engine.begin() as conn:
        await conn.run_sync(definition.metadata.create_all)
    wiring = SimpleNamespace(new_context=partial(Context, templates=Templates(settings.templates_dir),
                                                 names_wait=settings.names_wait), settings=settings)
    processor, dead_letters = consumer(subscriptions, wiring, CONTRACTS_EVENTS, runtime.new_uow)
    records = [record(e.to_json(), offset, topic=CONTRACTS_EVENTS, key=e.subject.encode())
               for offset, e in enumerate(events(offers + batch))]
    people, offered = records[:2 * PEOPLE], records[2 * PEOPLE:]
    try:
        await processor.process(people)
        measured = await measure_batches(processor, offered, batch, url)
        async with runtime.engine.connect() as conn:
            told = (await conn.exec_driver_sql(
                "SELECT count(*) FROM notifications WHERE kind = 'offer_received'")).scalar_one()
    finally:
        await runtime.engine.dispose()
    return {"notifications": measured.service_seconds, "database": measured.database_seconds,
            "told": told // 2 - batch, "dead_lettered": len(dead_letters.sent), "redone": measured.redone,
            "empty": measured.empty}


async def run(offers: int, batch: int) -> None:
    async with scratch("notifications_cpu") as url:
        report(await measure(url, offers, batch), offers, batch)


def report(measured: dict, offers: int, batch: int) -> None:
    # A batch handled again would be measured as a cost of the path under test.
    assert measured["told"] == offers and not measured["dead_lettered"] and not measured["redone"], measured
    line = f"notifications, {offers} offers, {batch} a batch: " \
           f"{measured['notifications'] / offers * 1000:.3f} ms CPU per offer"
    if measured["database"] is not None:
        line += f"; its database's backends {measured['database'] / offers * 1000:.3f} ms"
    print(line)
    print(machinery(measured["empty"], 1 / batch, measured["notifications"] / offers * 1000, "offer"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offers", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100, help="records a batch (1: the low-rate shape)")
    args = parser.parse_args()
    run_as_a_service(run(args.offers, args.batch))


if __name__ == "__main__":
    main()
