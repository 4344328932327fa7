"""Billing's own CPU per fund saga's charge step, in one process, on a real PostgreSQL and no broker.

`python -m bench.billing_cpu [--charges N] [--batch B]` creates a scratch database (POSTGRES_URL, as the superuser),
gives a hundred clients a primary card, then hands N ChargeClient steps, as Kafka records, to billing's consumer of
its saga steps as its bootstrap wires it, B records a batch (1: a low rate's shape; 100 or more: a burst's). Each
step records its pending charge for the gateway loop (not run here). It counts billing's CPU (time.process_time)
around the batches only, and, when the server runs on this machine, the CPU of the database's backends over the
same steps: the before/after figure for a change to the step (issue 10, thirty-sixth step: a batch's charges
recorded together, its clients' methods read ahead).
"""

import argparse
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

from platform_runtime.clock import FrozenClock
from platform_runtime.service import build_runtime
from platform_schemas import new_envelope
from platform_schemas.commands.saga import ChargeClient, MilestoneAmount
from platform_schemas.topics import BILLING_SAGA_COMMANDS

from bench.one_service import consumer, machinery, measure_batches, run_as_a_service, scratch
from tests.support.fakes import record

from billing.bootstrap import definition, subscriptions
from billing.service_layer.context import BillingContexts
from billing.settings import BillingSettings

CLIENTS = 100


def steps(charges: int) -> list:
    """Fund sagas' charge steps of two milestones each, a hundred clients between them."""
    found = []
    for i in range(charges):
        saga_id = f"fund-{uuid.uuid4().hex[:20]}"
        found.append(ChargeClient(
            charge_id=f"{saga_id}:charge", saga_id=saga_id, contract_id=f"c-{uuid.uuid4().hex[:12]}",
            client_id=f"cl-{i % CLIENTS}", amount=12_000, currency="USD", description="Milestone deposit",
            milestones=[MilestoneAmount(milestone_id="m1", amount=5_000),
                        MilestoneAmount(milestone_id="m2", amount=7_000)]))
    return [new_envelope(s, subject=s.contract_id, actor="system", source="contracts") for s in found]


async def measure(url: str, charges: int, batch: int) -> dict:
    """Billing's and its database's CPU seconds for these steps, and the charges they recorded."""
    settings = BillingSettings(database_url=url, http_port=0)
    runtime = build_runtime(definition, settings, FrozenClock(datetime.now(timezone.utc)))
    async with runtime.engine.begin() as conn:
        await conn.run_sync(definition.metadata.create_all)
        for i in range(CLIENTS):
            await conn.exec_driver_sql(
                "INSERT INTO billing_methods (billing_method_id, account_id, kind, token, is_primary, added_at)"
                " VALUES ($1, $2, 'card', 'tok', true, now())", (f"bm-{i}", f"cl-{i}"))
    wiring = SimpleNamespace(new_context=BillingContexts(settings, gateway=None), settings=settings)
    processor, dead_letters = consumer(subscriptions, wiring, BILLING_SAGA_COMMANDS, runtime.new_uow)
    records = [record(e.to_json(), offset, topic=BILLING_SAGA_COMMANDS, key=e.subject.encode())
               for offset, e in enumerate(steps(charges + batch))]
    try:
        measured = await measure_batches(processor, records, batch, url)
        async with runtime.engine.connect() as conn:
            recorded = (await conn.exec_driver_sql(
                "SELECT count(*) FROM charges WHERE billing_method_id IS NOT NULL")).scalar_one()
    finally:
        await runtime.engine.dispose()
    return {"billing": measured.service_seconds, "database": measured.database_seconds,
            "recorded": recorded - batch, "dead_lettered": len(dead_letters.sent), "redone": measured.redone,
            "empty": measured.empty}


async def run(charges: int, batch: int) -> None:
    async with scratch("billing_cpu") as url:
        report(await measure(url, charges, batch), charges, batch)


def report(measured: dict, charges: int, batch: int) -> None:
    # A batch handled again would be measured as a cost of the step's statement.
    assert measured["recorded"] == charges and not measured["dead_lettered"] and not measured["redone"], measured
    line = f"billing, {charges} charge steps, {batch} a batch: {measured['billing'] / charges * 1000:.3f} ms CPU a step"
    if measured["database"] is not None:
        line += f"; its database's backends {measured['database'] / charges * 1000:.3f} ms"
    print(line)
    print(machinery(measured["empty"], 1 / batch, measured["billing"] / charges * 1000, "step"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charges", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100, help="records a batch (1: the low-rate shape)")
    args = parser.parse_args()
    run_as_a_service(run(args.charges, args.batch))


if __name__ == "__main__":
    main()
