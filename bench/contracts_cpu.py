"""The contracts service's own CPU per fund saga, in one process, on a real PostgreSQL and no broker.

`python -m bench.contracts_cpu [--sagas N] [--batch B]` creates a scratch database (POSTGRES_URL, as the
superuser), then runs N fund sagas through the service's real dispatchers and units of work: SendOffer, then
the ClientCharged and EscrowFunded that billing and escrow would answer, built from the charges contracts put
in its outbox (escrow holds on ClientCharged). Messages are handled B to a transaction (1: the low-rate shape, one message a batch), and
CPU time (time.process_time) is counted around the handling and the commit only, so Kafka's fetches, the
relay and the idle loops are left out: a before/after figure for changes to contracts' hot path that holds
on a loaded machine, where a whole-platform run does not. The statements it ran are counted by
pg_stat_statements when the server preloads it, and, when the server runs on this machine, the CPU of its
backends for the scratch database is counted over the same sagas (all of it: the protocol, the commits and the
statements' execution): the server's side of a change to a statement, which no whole-platform pair resolved
below a tenth (issue 10, thirty-fourth step). Beside the statements' count it prints what a bare round trip costs
here on each side (`one_service.round_trip`) times that count: how much of a saga's CPU the round trips themselves
are, and how much the statements' own work (issue 10, thirty-seventh step: about an eighth at one message a batch);
and what an empty transaction costs it through a unit of work and on asyncpg alone (`one_service.empty_transaction`).
"""

import argparse
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from functools import partial

import asyncpg
from platform_runtime.clock import FrozenClock
from platform_runtime.consumer import read_batch
from platform_runtime.dispatch import CommandDispatcher, EventDispatcher
from platform_runtime.relay import asyncpg_dsn
from platform_runtime.service import build_runtime
from platform_schemas import new_envelope
from platform_schemas.actors import COMMAND_ROUTES
from platform_schemas.choreography import hold_for
from platform_schemas.commands.contracts import MilestoneSpec, RegisterAccount, SendOffer
from platform_schemas.events.billing import ClientCharged
from platform_schemas.events.escrow import EscrowFunded
from platform_schemas.topics import CONTRACTS_ADMIN_COMMANDS, CONTRACTS_COMMANDS, CONTRACTS_EVENTS
from platform_schemas.types import Posting

from bench.one_service import (backends_cpu_seconds, empty_transaction, machinery, round_trip, run_as_a_service,
                               scratch)

from contracts.bootstrap import COMMANDS, definition
from contracts.service_layer import bonuses, statement
from contracts.service_layer.offers import read_parties_ahead
from contracts.service_layer.context import Context
from contracts.service_layer.sagas.replies import REPLY_HANDLERS, read_sagas_ahead
from contracts.settings import ContractsSettings


async def _statements(url: str, reset: bool = False) -> Counter:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        if reset:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.execute("SELECT pg_stat_statements_reset()")
            return Counter()
        rows = await conn.fetch("SELECT query, calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                                "WHERE d.datname = current_database() AND query NOT LIKE '%pg_stat%'")
        return Counter({r["query"]: r["calls"] for r in rows})
    except asyncpg.PostgresError:
        return Counter()
    finally:
        await conn.close()


async def run(sagas: int, batch: int) -> None:
    async with scratch("contracts_cpu") as url:
        await _measure(url, sagas, batch)


async def _measure(url: str, sagas: int, batch: int) -> None:
    clock = FrozenClock(datetime.now(timezone.utc))
    settings = ContractsSettings(database_url=url, http_port=0)
    runtime = build_runtime(definition, settings, clock)
    async with runtime.engine.begin() as conn:
        await conn.run_sync(definition.metadata.create_all)
    contexts = partial(Context, settings=settings)
    commands = CommandDispatcher(CONTRACTS_COMMANDS, COMMANDS, CONTRACTS_EVENTS, contexts, routes=COMMAND_ROUTES,
                                 read_ahead=read_parties_ahead)
    admin = CommandDispatcher(CONTRACTS_ADMIN_COMMANDS, COMMANDS, CONTRACTS_EVENTS, contexts, routes=COMMAND_ROUTES)
    replies = EventDispatcher(statement.recording({**REPLY_HANDLERS, **bonuses.EVENT_HANDLERS}), contexts,
                              read_ahead=read_sagas_ahead)

    async def handle(dispatch, envelopes) -> tuple[float, float | None, list]:
        """Handle these messages in transactions of `batch`, as the consumer does (claimed at once, then the
        dispatcher's prefetch); CPU seconds, the backends' CPU seconds (None: not counted) and what they put in
        the outbox. The backends' CPU is read around the whole phase: a connection opened within it counts from
        its start."""
        spent, out = 0.0, []
        database_before = await backends_cpu_seconds(asyncpg_dsn(url))
        owner = dispatch.__self__
        for i in range(0, len(envelopes), batch):
            started = time.process_time()
            async with runtime.new_uow() as uow:
                uow.savepoint_per_message = False
                chunk = envelopes[i:i + batch]
                await read_batch(uow, chunk, owner.claim_status, owner.prefetch)
                for envelope in chunk:
                    await dispatch(envelope, uow)
                out += [o.envelope for o in uow.outgoing]
                await uow.commit()
            spent += time.process_time() - started
        database_after = await backends_cpu_seconds(asyncpg_dsn(url))
        counted = database_before is not None and database_after is not None
        return spent, database_after - database_before if counted else None, out

    parties = [(f"cl-{i}", f"fl-{i}") for i in range(sagas)]
    await handle(admin.dispatch, [
        new_envelope(RegisterAccount(account_id=a, role=role, name="N", email="n@example.test"), subject=a,
                     actor="admin:bench", source="bench")
        for pair in parties for a, role in zip(pair, ("client", "freelancer"))])
    offers = [SendOffer(contract_id=f"c-{uuid.uuid4().hex[:12]}", client_id=c, freelancer_id=f, title="Logo",
                        currency="USD", deposit="first_milestone",
                        milestones=[MilestoneSpec(milestone_id=f"m-{uuid.uuid4().hex[:12]}", title=f"M{k}",
                                                  amount=10_000 * (k + 1)) for k in range(3)])
              for c, f in parties]
    # One warm-up saga's worth of statements (prepared once per connection) is part of the count: small.
    await _statements(url, reset=True)
    cpu, database = {}, {}
    cpu["SendOffer"], database["SendOffer"], out = await handle(commands.dispatch, [
        new_envelope(o, subject=o.contract_id, actor=o.client_id, source="bench") for o in offers])
    charged = [ClientCharged(
        charge_id=c.data["charge_id"], saga_id=c.data["saga_id"], contract_id=c.data["contract_id"],
        client_id=c.data["client_id"], billing_method_id="bm-1", amount=c.data["amount"], currency="USD",
        purpose="fixed_price", milestones=c.data["milestones"], gateway_reference="g")
        for c in out if c.type == "ChargeClient"]
    cpu["ClientCharged"], database["ClientCharged"], out = await handle(replies.dispatch, [
        new_envelope(c, subject=c.contract_id, actor="system", source="billing") for c in charged])
    holds = [hold_for(c) for c in charged]  # escrow holds on ClientCharged; contracts asks nothing of it
    cpu["EscrowFunded"], database["EscrowFunded"], out = await handle(replies.dispatch, [new_envelope(EscrowFunded(
        hold_id=h.hold_id, saga_id=h.saga_id, charge_id=h.charge_id, contract_id=h.contract_id,
        client_id=h.client_id, currency="USD", amount=sum(m.amount for m in h.milestones), milestones=h.milestones,
        postings=[Posting(posting_id=f"p-{h.hold_id}", debit_account="a", credit_account="b",
                          amount=sum(m.amount for m in h.milestones), currency="USD")]),
        subject=h.contract_id, actor="system", source="escrow") for h in holds])
    sent = sum(e.type == "OfferSent" for e in out)
    statements = await _statements(url)
    empty = await empty_transaction(runtime.new_uow, asyncpg_dsn(url))
    await runtime.engine.dispose()
    assert sent == sagas, f"{sent} of {sagas} sagas ended in OfferSent"
    total = sum(cpu.values())
    print(f"contracts, {sagas} fund sagas, {batch} message(s) a transaction: {total / sagas * 1000:.2f} ms CPU per "
          f"saga (" + ", ".join(f"{k} {v / sagas * 1000:.2f}" for k, v in cpu.items()) + ")")
    if None not in database.values():
        print(f"  its database's backends: {sum(database.values()) / sagas * 1000:.2f} ms CPU per saga ("
              + ", ".join(f"{k} {v / sagas * 1000:.2f}" for k, v in database.items()) + ")")
    transactions = 3 * -(-sagas // batch)  # each of the three messages' phases, `batch` a transaction
    print(machinery(empty, transactions / sagas, total / sagas * 1000, "saga"))
    if statements:
        trips = sum(statements.values()) / sagas
        print(f"  {trips:.2f} statements per saga (BEGIN/COMMIT included)")
        floor = await round_trip(asyncpg_dsn(url))
        print(f"  a bare round trip here (a prepared SELECT 1): {floor.client_us:.0f} us of this process"
              + (f", {floor.server_us:.0f} us of its backend" if floor.server_us is not None else "")
              + f"; times {trips:.2f}: {trips * floor.client_us / 1000:.2f} ms a saga "
              + f"({trips * floor.client_us / 1000 / (total / sagas * 1000):.0%} of the CPU above)"
              + (f" and {trips * floor.server_us / 1000:.2f} ms "
                 f"({trips * floor.server_us / 1000 / (sum(database.values()) / sagas * 1000):.0%} of the backends')"
                 if floor.server_us is not None and None not in database.values() and sum(database.values()) else ""))
        for query, calls in statements.most_common(25):
            print(f"  {calls / sagas:6.2f}  {' '.join(query.split())[:130]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sagas", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1, help="messages per transaction (1: the low-rate shape)")
    args = parser.parse_args()
    run_as_a_service(run(args.sagas, args.batch))


if __name__ == "__main__":
    main()
