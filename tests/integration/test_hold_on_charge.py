"""Escrow holds a fund saga's charge when it reads billing's ClientCharged (escrow/service_layer/hold_on_charge.py),
through the consumer's own path on real PostgreSQL: escrow's subscription to billing.events, as its bootstrap builds it.

The hold is the saga's "hold" step: held once under the step id, answered with EscrowFunded caused by the event; a
redelivery or the orchestrator's HoldEscrow after the deadline holds nothing twice; a hold escrow refuses is
answered with EscrowHoldRejected and stays refused for the same step sent again; one that cannot be handled is
answered as failed before the event is dead-lettered. A bonus batch's charge holds nothing.
"""

import json
import uuid
from datetime import timedelta
from functools import partial
from types import SimpleNamespace

import pytest
import pytest_asyncio
from platform_runtime.clock import SystemClock
from platform_runtime.consumer import BatchProcessor
from platform_runtime.relay import notify_channel
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope, new_envelope
from platform_schemas.commands.saga import HoldEscrow, MilestoneAmount
from platform_schemas.events.billing import ClientCharged
from platform_schemas.topics import BILLING_EVENTS, ESCROW_EVENTS, ESCROW_SAGA_COMMANDS

from escrow.adapters.tables import metadata
from escrow.bootstrap import definition, subscriptions
from escrow.service_layer import handlers as steps
from escrow.service_layer.context import Context
from tests.integration.test_ledger_keys import ledger_check
from tests.integration.test_ledger_refusals import rows
from tests.support.fakes import FakeDeadLetters, record
from tests.support.probe_service import migrated_engine

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def escrow_db(infra):
    async with migrated_engine(infra.postgres_url, "hold_on_charge", definition.migrations_dir) as engine:
        yield engine.url.render_as_string(hide_password=False), engine


def consumers(engine) -> tuple[dict[str, BatchProcessor], FakeDeadLetters]:
    """Escrow's consumers of billing.events and of its saga commands, wired by its own bootstrap (`subscriptions`)."""
    runtime = SimpleNamespace(new_context=partial(Context, pending_for=timedelta(days=5)))
    dead_letters = FakeDeadLetters()
    return {sub.topic: BatchProcessor(sub.topic, new_uow=lambda: UnitOfWork(
        engine, metadata.tables, "escrow", SystemClock(), notify_channel("escrow")), dead_letters=dead_letters,
        max_attempts=2, backoff_seconds=0.01, **sub.handling()) for sub in subscriptions(runtime)}, dead_letters


def billing_events(engine) -> tuple[BatchProcessor, FakeDeadLetters]:
    processors, dead_letters = consumers(engine)
    return processors[BILLING_EVENTS], dead_letters


def steps_consumer(engine) -> BatchProcessor:
    return consumers(engine)[0][ESCROW_SAGA_COMMANDS]


def charged(contract_id: str, currency: str = "USD", purpose: str = "fixed_price",
            milestones=(("m1", 10_000),)) -> Envelope:
    saga_id = f"fund-{uuid.uuid4().hex[:20]}"
    amounts = [MilestoneAmount(milestone_id=m, amount=a) for m, a in milestones]
    return new_envelope(ClientCharged(
        charge_id=f"{saga_id}:charge", saga_id=saga_id, contract_id=contract_id, client_id="cl-1",
        billing_method_id="card-1", amount=sum(a.amount for a in amounts), currency=currency, purpose=purpose,
        milestones=amounts, gateway_reference="ch_1"), subject=contract_id, actor="system", source="billing")


async def consume(processor: BatchProcessor, *envelopes: Envelope, topic: str = BILLING_EVENTS) -> None:
    await processor.process([record(e.to_json(), offset, topic=topic, key=e.subject.encode())
                             for offset, e in enumerate(envelopes)])


async def answers(url: str, *envelopes: Envelope) -> list[dict]:
    """What escrow published in answer to these messages (its outbox, each with its topic), oldest first."""
    causes = [e.id for e in envelopes]
    found = [{**json.loads(r["payload"]), "topic": r["topic"]}
             for r in await rows(url, "SELECT topic, payload FROM outbox ORDER BY seq")]
    return [m for m in found if m.get("causationid") in causes]


def contract() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


async def test_a_fund_sagas_charge_is_held_once_under_the_hold_step_and_answered(escrow_db):
    url, engine = escrow_db
    processor, dead_letters = billing_events(engine)
    first, second = charged(contract()), charged(contract(), milestones=(("m1", 700), ("m2", 500)))
    bonus = charged(contract(), purpose="bonus", milestones=())
    await consume(processor, first, second, bonus)  # a batch of several: claimed at once
    funded = await answers(url, first, second, bonus)
    assert [(m["type"], m["data"]["hold_id"], m["data"]["amount"], m["topic"]) for m in funded] == [
        ("EscrowFunded", f"{first.data['saga_id']}:hold", 10_000, ESCROW_EVENTS),
        ("EscrowFunded", f"{second.data['saga_id']}:hold", 1_200, ESCROW_EVENTS)]
    assert [m["correlationid"] for m in funded] == [first.correlationid, second.correlationid]
    held = await rows(url, "SELECT transaction_id FROM ledger_transactions ORDER BY transaction_id")
    assert {f"{e.data['saga_id']}:hold" for e in (first, second)} <= {r["transaction_id"] for r in held}

    await consume(processor, first, second)  # redelivered: nothing again
    lone = charged(contract())
    await consume(processor, lone)  # a batch of one: claimed with its step's kept answer, one statement
    assert len(await answers(url, first, second, lone)) == 3
    # The orchestrator's HoldEscrow after its deadline, the same step: answered again, held once.
    again = new_envelope(HoldEscrow(
        hold_id=f"{first.data['saga_id']}:hold", saga_id=first.data["saga_id"], charge_id=first.data["charge_id"],
        contract_id=first.subject, client_id="cl-1", currency="USD",
        milestones=[MilestoneAmount(milestone_id="m1", amount=10_000)]), subject=first.subject, actor="system",
        source="contracts")
    await steps_consumer(engine).process([record(again.to_json(), 0, topic=ESCROW_SAGA_COMMANDS)])
    assert [m["type"] for m in await answers(url, again)] == ["EscrowFunded"]
    holdings = await rows(url, f"SELECT funded FROM holdings WHERE contract_id = '{first.subject}'")
    assert [r["funded"] for r in holdings] == [10_000]  # the contract ids are the test's own: no quoting needed
    assert dead_letters.sent == []
    assert await ledger_check(url) == []


async def test_a_hold_escrow_refuses_is_answered_as_refused_and_stays_refused_for_the_same_step(escrow_db):
    url, engine = escrow_db
    processor, _ = billing_events(engine)
    contract_id = contract()
    await consume(processor, charged(contract_id))  # the contract is held in USD
    other, refused = charged(contract()), charged(contract_id, currency="EUR")
    await consume(processor, other, refused)  # the batch is redone with a savepoint each; only one is refused
    assert [m["type"] for m in await answers(url, other)] == ["EscrowFunded"]
    (answer,) = await answers(url, refused)
    assert (answer["type"], answer["data"]["reason_code"]) == ("EscrowHoldRejected", "currency_mismatch")
    assert answer["data"]["step_id"] == answer["data"]["hold_id"] == f"{refused.data['saga_id']}:hold"
    assert answer["data"]["charge_id"] == refused.data["charge_id"]  # what contracts gives back

    resent = new_envelope(HoldEscrow(
        hold_id=f"{refused.data['saga_id']}:hold", saga_id=refused.data["saga_id"],
        charge_id=refused.data["charge_id"], contract_id=contract_id, client_id="cl-1", currency="EUR",
        milestones=[MilestoneAmount(milestone_id="m1", amount=10_000)]), subject=contract_id, actor="system",
        source="contracts")
    await steps_consumer(engine).process([record(resent.to_json(), 0, topic=ESCROW_SAGA_COMMANDS)])
    (again,) = await answers(url, resent)
    assert (again["type"], again["data"]["reason_code"]) == ("EscrowHoldRejected", "currency_mismatch")
    holdings = await rows(url, f"SELECT funded FROM holdings WHERE contract_id = '{contract_id}'")
    assert [r["funded"] for r in holdings] == [10_000]
    assert await ledger_check(url) == []


async def test_a_hold_that_cannot_be_handled_is_answered_as_failed_before_the_event_is_dead_lettered(escrow_db,
                                                                                                    monkeypatch):
    url, engine = escrow_db

    async def broken(cmd, ctx):
        raise RuntimeError("the ledger is on fire")

    monkeypatch.setitem(steps.HANDLERS, HoldEscrow, broken)  # read by the bootstrap when it wires the participant
    processor, dead_letters = billing_events(engine)
    event = charged(contract())
    await consume(processor, event)
    (answer,) = await answers(url, event)
    assert (answer["type"], answer["data"]["reason_code"]) == ("EscrowHoldRejected", "processing_failed")
    assert [error for _, error, _ in dead_letters.sent] == ["RuntimeError('the ledger is on fire')"]
