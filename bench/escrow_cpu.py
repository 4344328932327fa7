"""Escrow's own CPU per fund saga's hold, in one process, on a real PostgreSQL and no broker.

`python -m bench.escrow_cpu [--holds N] [--batch B]` creates a scratch database (POSTGRES_URL, as the superuser),
then hands N fund sagas' ClientCharged events, as Kafka records, to escrow's consumer of billing.events as its
bootstrap wires it (`subscriptions`: each charge is the saga's hold step), B records a batch (1: a low rate's
shape; 100 or more: a burst's). It counts escrow's CPU (time.process_time) around the batches only, and, when the
server runs on this machine, the CPU of the database's backends over the same holds: the before/after figure for a
change to the hold (issue 10, thirty-fourth step: a hold as one set-based statement a batch, sized against one
statement a hold), where whole-platform pairs resolve nothing below about a tenth.
"""

import argparse
import uuid
from datetime import datetime, timezone
from functools import partial
from types import SimpleNamespace

from platform_runtime.clock import FrozenClock
from platform_runtime.service import build_runtime
from platform_schemas import new_envelope
from platform_schemas.commands.saga import MilestoneAmount
from platform_schemas.events.billing import ClientCharged
from platform_schemas.topics import BILLING_EVENTS

from bench.one_service import consumer, machinery, measure_batches, run_as_a_service, scratch
from tests.support.fakes import record

from escrow.bootstrap import EscrowSettings, definition, subscriptions
from escrow.service_layer.context import Context


def charges(holds: int) -> list[ClientCharged]:
    """Fund sagas' charges of two milestones each, a hundred clients between them."""
    found = []
    for i in range(holds):
        saga_id = f"fund-{uuid.uuid4().hex[:20]}"
        found.append(ClientCharged(
            charge_id=f"{saga_id}:charge", saga_id=saga_id, contract_id=f"c-{uuid.uuid4().hex[:12]}",
            client_id=f"cl-{i % 100}", billing_method_id="card-1", amount=12_000, currency="USD",
            purpose="fixed_price", milestones=[MilestoneAmount(milestone_id="m1", amount=5_000),
                                               MilestoneAmount(milestone_id="m2", amount=7_000)],
            gateway_reference="ch_1"))
    return found


async def measure(url: str, holds: int, batch: int) -> dict:
    """Escrow's and its database's CPU seconds for these holds, and the answers escrow wrote."""
    settings = EscrowSettings(database_url=url, http_port=0)
    runtime = build_runtime(definition, settings, FrozenClock(datetime.now(timezone.utc)))
    async with runtime.engine.begin() as conn:
        await conn.run_sync(definition.metadata.create_all)
    wiring = SimpleNamespace(new_context=partial(Context, pending_for=settings.earnings_pending_for))
    processor, dead_letters = consumer(subscriptions, wiring, BILLING_EVENTS, runtime.new_uow)
    records = [record(e.to_json(), offset, topic=BILLING_EVENTS, key=e.subject.encode()) for offset, e in enumerate(
        new_envelope(c, subject=c.contract_id, actor="system", source="billing") for c in charges(holds + batch))]
    try:
        measured = await measure_batches(processor, records, batch, url)
        async with runtime.engine.connect() as conn:
            answered = (await conn.exec_driver_sql(
                "SELECT count(*) FROM outbox WHERE type = 'EscrowFunded'")).scalar_one()
    finally:
        await runtime.engine.dispose()
    return {"escrow": measured.service_seconds, "database": measured.database_seconds, "funded": answered - batch,
            "dead_lettered": len(dead_letters.sent), "redone": measured.redone,
            "empty": measured.empty}


async def run(holds: int, batch: int) -> None:
    async with scratch("escrow_cpu") as url:
        report(await measure(url, holds, batch), holds, batch)


def report(measured: dict, holds: int, batch: int) -> None:
    # A batch handled again (a hold not as taken for granted) would be measured as a cost of the hold's statement.
    assert measured["funded"] == holds and not measured["dead_lettered"] and not measured["redone"], measured
    line = f"escrow, {holds} holds, {batch} a batch: {measured['escrow'] / holds * 1000:.3f} ms CPU per hold"
    if measured["database"] is not None:
        line += f"; its database's backends {measured['database'] / holds * 1000:.3f} ms"
    print(line)
    print(machinery(measured["empty"], 1 / batch, measured["escrow"] / holds * 1000, "hold"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holds", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100, help="records a batch (1: the low-rate shape)")
    args = parser.parse_args()
    run_as_a_service(run(args.holds, args.batch))


if __name__ == "__main__":
    main()
