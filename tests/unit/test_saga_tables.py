"""Every step of every saga, its answers and its deadline, from one table (on fakes, frozen clock).

Given a saga in a step, expect: on each answer, the next step's command on its topic (or, for a step its
participant takes by itself on that answer, none until its deadline) or the saga's end; on silence past
SAGA_STEP_TIMEOUT, the same command again with the same step id, up to SAGA_STEP_ATTEMPTS sends, then
`needs_attention`, after which the step's answer still moves it.
test_fund_saga_steps.py tests what the fund saga's answers do to the contract in detail.
"""

from datetime import timedelta

import pytest
from platform_runtime.unit_of_work import Cause
from platform_schemas import Envelope, Message, new_envelope
from platform_schemas.choreography import hold_for
from platform_schemas.commands.saga import (
    ChargeClient, HoldEscrow, MilestoneAmount, RefundCharge, RefundEscrow, ReleaseEscrow,
)
from platform_schemas.events.billing import ChargeFailed, ChargeRefunded, ClientCharged, RefundChargeFailed
from platform_schemas.events.escrow import (
    EscrowFunded, EscrowHoldRejected, EscrowRefunded, EscrowRefundFailed, EscrowReleased, EscrowReleaseFailed,
)
from platform_schemas.topics import BILLING_SAGA_COMMANDS, ESCROW_SAGA_COMMANDS

from contracts.domain import contracts as domain
from contracts.domain.accounts import Account
from contracts.domain.contracts import Contract, Milestone
from contracts.domain.sagas import COMPLETED, FAILED, NEEDS_ATTENTION, RUNNING
from contracts.service_layer.sagas.fund import fund_milestones
from contracts.service_layer.sagas.orchestrator import SAGA_DEADLINE
from contracts.service_layer.sagas.refund import refund_milestone
from contracts.service_layer.sagas.release import release_milestone
from contracts.service_layer.sagas.replies import SAGAS, handle_reply, on_step_deadline
from contracts.settings import ContractsSettings
from tests.support.fakes import FakeContext, contracts_context

pytestmark = pytest.mark.unit

TIMEOUT, ATTEMPTS = timedelta(seconds=30), 3
CLIENT = Account("client-1", "client", "Cleo Client", "cleo@example.test")
FREELANCER = Account("free-1", "freelancer", "Fred Freelancer", "fred@example.test")


# -- the answers, each built from the step command it answers -------------------------------------------

def charged(c: ChargeClient) -> ClientCharged:
    return ClientCharged(charge_id=c.charge_id, saga_id=c.saga_id, contract_id=c.contract_id, client_id=c.client_id,
                         billing_method_id="card-1", amount=c.amount, currency=c.currency, purpose=c.purpose,
                         milestones=c.milestones, gateway_reference="ch_1")


def charge_failed(c: ChargeClient) -> ChargeFailed:
    return ChargeFailed(charge_id=c.charge_id, saga_id=c.saga_id, contract_id=c.contract_id, client_id=c.client_id,
                        amount=c.amount, currency=c.currency, purpose=c.purpose, reason_code="card_declined",
                        message="declined", consecutive_failures=1)


def funded(h: HoldEscrow) -> EscrowFunded:
    return EscrowFunded(hold_id=h.hold_id, saga_id=h.saga_id, charge_id=h.charge_id, contract_id=h.contract_id,
                        client_id=h.client_id, currency=h.currency, amount=sum(m.amount for m in h.milestones),
                        milestones=h.milestones, postings=[])


def hold_refused(h: HoldEscrow) -> EscrowHoldRejected:
    return EscrowHoldRejected(hold_id=h.hold_id, step_id=h.hold_id, saga_id=h.saga_id, charge_id=h.charge_id,
                              contract_id=h.contract_id, reason_code="currency_mismatch", message="held in EUR")


def funded_before_charged(c: ChargeClient) -> EscrowFunded:
    """Escrow read billing's ClientCharged and answered before contracts read it (another topic)."""
    return funded(hold_for(charged(c)))


def hold_refused_before_charged(c: ChargeClient) -> EscrowHoldRejected:
    return hold_refused(hold_for(charged(c)))


def charge_refunded(r: RefundCharge) -> ChargeRefunded:
    return ChargeRefunded(refund_id=r.refund_id, charge_id=r.charge_id, saga_id=r.saga_id, contract_id=r.contract_id,
                          client_id=r.client_id, billing_method_id="card-1", amount=r.amount, currency=r.currency,
                          milestone_id=r.milestone_id)


def refund_refused(r: RefundCharge) -> RefundChargeFailed:
    return RefundChargeFailed(refund_id=r.refund_id, step_id=r.refund_id, charge_id=r.charge_id, saga_id=r.saga_id,
                              contract_id=r.contract_id, client_id=r.client_id, amount=r.amount, currency=r.currency,
                              milestone_id=r.milestone_id, reason_code="refund_declined", message="refused",
                              retryable=True)


def released(r: ReleaseEscrow) -> EscrowReleased:
    return EscrowReleased(**r.model_dump(), postings=[])


def release_refused(r: ReleaseEscrow) -> EscrowReleaseFailed:
    return EscrowReleaseFailed(release_id=r.release_id, step_id=r.release_id, saga_id=r.saga_id,
                               contract_id=r.contract_id, milestone_id=r.milestone_id,
                               reason_code="insufficient_funds", message="not held")


def escrow_refunded(r: RefundEscrow) -> EscrowRefunded:
    return EscrowRefunded(**r.model_dump(), postings=[])


def escrow_refund_refused(r: RefundEscrow) -> EscrowRefundFailed:
    return EscrowRefundFailed(refund_id=r.refund_id, step_id=r.refund_id, saga_id=r.saga_id,
                              contract_id=r.contract_id, milestone_id=r.milestone_id,
                              reason_code="processing_failed", message="could not be handled")


# -- the table: (saga, step, answer) -> next step and its command, or the saga's end ------------------

TAKEN = "taken by its participant"  # no command: the participant acts on the answer itself; only a deadline

#        saga       step          answer                       then              next command (topic, type)
ROWS = [
    ("fund",    "charge",     charged,                     "hold",           TAKEN),
    ("fund",    "charge",     charge_failed,               FAILED,           None),
    ("fund",    "charge",     funded_before_charged,       COMPLETED,        None),
    ("fund",    "charge",     hold_refused_before_charged, "compensate",     (BILLING_SAGA_COMMANDS, "RefundCharge")),
    ("fund",    "hold",       funded,                COMPLETED,        None),
    ("fund",    "hold",       hold_refused,          "compensate",     (BILLING_SAGA_COMMANDS, "RefundCharge")),
    ("fund",    "compensate", charge_refunded,       FAILED,           None),
    ("fund",    "compensate", refund_refused,        NEEDS_ATTENTION,  None),
    ("release", "release",    released,              COMPLETED,        None),
    ("release", "release",    release_refused,       NEEDS_ATTENTION,  None),
    ("refund",  "escrow",     escrow_refunded,       "gateway",        (BILLING_SAGA_COMMANDS, "RefundCharge")),
    ("refund",  "escrow",     escrow_refund_refused, NEEDS_ATTENTION,  None),
    ("refund",  "gateway",    charge_refunded,       COMPLETED,        None),
    ("refund",  "gateway",    refund_refused,        NEEDS_ATTENTION,  None),
]
# The way to each step: the answers that lead there from the saga's start.
PATHS = {("fund", "charge"): [], ("fund", "hold"): [charged], ("fund", "compensate"): [charged, hold_refused],
         ("release", "release"): [], ("refund", "escrow"): [], ("refund", "gateway"): [escrow_refunded]}
STEP_COMMANDS = {"charge": ChargeClient, "hold": HoldEscrow, "compensate": RefundCharge, "release": ReleaseEscrow,
                 "escrow": RefundEscrow, "gateway": RefundCharge}


def test_the_table_covers_every_answer_of_every_saga():
    wanted = {(t.kind, on.step, on.reply.__name__) for t in SAGAS.values() for on in t.replies}
    built = {(kind, step, answer.__annotations__["return"].__name__) for kind, step, answer, *_ in ROWS}
    assert built == wanted
    assert set(PATHS) == {(t.kind, step) for t in SAGAS.values() for step in t.steps}


# -- givens ----------------------------------------------------------------------------------------------

def context() -> FakeContext:
    settings = ContractsSettings(database_url="postgresql+asyncpg://fake/fake", saga_step_timeout=TIMEOUT,
                                 saga_step_attempts=ATTEMPTS)
    return contracts_context(CLIENT, FREELANCER, settings=settings)


def seed(ctx: FakeContext, milestone_status: str) -> Contract:
    contract = Contract("c-1", "client-1", "free-1", "Logo", "USD", "first_milestone", domain.ACTIVE,
                        created_at=ctx.now)
    contract.milestones = [Milestone("m-1", "Sketches", 10_000, 0, status=milestone_status, charge_id="charge-1")]
    ctx.contracts._rows["c-1"] = contract  # noqa: SLF001 - seeding the fake
    return contract


async def start(ctx: FakeContext, kind: str) -> str:
    ctx.uow.cause = Cause("cmd-1", "cmd-1", "client-1")
    if kind == "fund":
        contract = seed(ctx, domain.M_FUNDING)
        saga = await fund_milestones(ctx, contract, contract.milestones, offer=False, command_id="cmd-1",
                                     started_by="cmd-1")
    elif kind == "release":
        contract = seed(ctx, domain.RELEASING)
        saga = await release_milestone(ctx, contract, contract.milestones[0], 10_000, command_id="cmd-1",
                                       started_by="cmd-1")
    else:
        contract = seed(ctx, domain.REFUNDING)
        saga = await refund_milestone(ctx, contract, contract.milestones[0], 10_000, reason="cancel",
                                      command_id="cmd-1", started_by="cmd-1")
    await ctx.contracts.save(contract, "seeded", ctx.now)
    return saga.saga_id


def sent(ctx: FakeContext) -> list[tuple[str, Envelope]]:
    return [(o.topic, o.envelope) for o in ctx.uow.outgoing if o.topic in (BILLING_SAGA_COMMANDS,
                                                                          ESCROW_SAGA_COMMANDS)]


def step_command(ctx: FakeContext, step: str) -> Message:
    ((_, envelope),) = sent(ctx)
    assert envelope.type == STEP_COMMANDS[step].__name__
    return STEP_COMMANDS[step].model_validate(envelope.data)


async def answer(ctx: FakeContext, event: Message) -> None:
    """A participant's answer, handled in its own transaction as the service does."""
    await ctx.uow.commit()
    ctx.envelope = new_envelope(event, subject="c-1", actor="system", source="participant")
    ctx.uow.cause = Cause.of(ctx.envelope)
    await handle_reply(event, ctx)


async def given(kind: str, step: str) -> tuple[FakeContext, str, Message]:
    """A saga of this kind waiting in `step`, with the command that step sent."""
    ctx = context()
    saga_id = await start(ctx, kind)
    command = step_command(ctx, SAGAS[kind].first)
    for reply in PATHS[(kind, step)]:
        await answer(ctx, reply(command))
        command = asked(ctx, saga_id)
    assert ctx.sagas.stored(saga_id).step == step
    return ctx, saga_id, command


def asked(ctx: FakeContext, saga_id: str) -> Message:
    """What the saga's step asked for: the command it sent, or, for a step its participant takes by itself, the
    command its first re-send will carry."""
    saga = ctx.sagas.stored(saga_id)
    ask = SAGAS[saga.kind].steps[saga.step]
    if ask.taken_on is not None and not sent(ctx):
        return ask.command(saga, ctx.contracts._rows[saga.contract_id])  # noqa: SLF001 - reading the fake
    return step_command(ctx, saga.step)


async def fire_due_deadlines(ctx: FakeContext) -> int:
    """What the timer runner does: each due deadline in its own transaction."""
    fired = 0
    for timer in ctx.uow.pending_timers(SAGA_DEADLINE):
        if timer["due_at"] <= ctx.now:
            await ctx.uow.commit()
            timer["fired"] = True
            ctx.uow.cause = Cause(f"timer:{timer['timer_id']}", "cmd-1", "system")
            await on_step_deadline(timer["payload"], ctx)
            fired += 1
    return fired


# -- each answer ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "step", "reply", "then", "next_command"), ROWS,
                         ids=[f"{r[0]}-{r[1]}-{r[2].__name__}" for r in ROWS])
async def test_given_a_saga_in_a_step_an_answer_leads_where_its_table_says(kind, step, reply, then, next_command):
    ctx, saga_id, command = await given(kind, step)
    await answer(ctx, reply(command))
    saga = ctx.sagas.stored(saga_id)
    if next_command is None:
        assert (saga.status, sent(ctx)) == (then, [])
        assert ctx.uow.pending_timers(SAGA_DEADLINE) == []  # an ended or escalated saga waits for no deadline
    elif next_command == TAKEN:
        assert (saga.status, saga.step, sent(ctx)) == (RUNNING, then, [])
        assert [t["payload"]["step"] for t in ctx.uow.pending_timers(SAGA_DEADLINE)] == [then]
    else:
        assert (saga.status, saga.step) == (RUNNING, then)
        ((topic, envelope),) = sent(ctx)
        assert (topic, envelope.type) == next_command
        assert envelope.data[_step_key(envelope.type)] == f"{saga_id}:{then}"


@pytest.mark.parametrize(("kind", "step", "reply", "then", "next_command"), ROWS,
                         ids=[f"{r[0]}-{r[1]}-{r[2].__name__}" for r in ROWS])
async def test_an_answer_given_twice_moves_the_saga_once(kind, step, reply, then, next_command):
    ctx, saga_id, command = await given(kind, step)
    await answer(ctx, reply(command))
    before = ctx.sagas.stored(saga_id)
    await answer(ctx, reply(command))
    after = ctx.sagas.stored(saga_id)
    assert (after.status, after.step, after.step_log) == (before.status, before.step, before.step_log)
    assert sent(ctx) == []


# -- each deadline ---------------------------------------------------------------------------------------

STEPS = sorted(PATHS)


@pytest.mark.parametrize(("kind", "step"), STEPS, ids=[f"{k}-{s}" for k, s in STEPS])
async def test_a_step_without_an_answer_is_sent_again_with_its_step_id_then_needs_attention(kind, step):
    ctx, saga_id, command = await given(kind, step)
    await ctx.uow.commit()
    second = timedelta(seconds=1)
    for attempt in range(1, ATTEMPTS + 1):
        wait = TIMEOUT * 2 ** (attempt - 1)  # each wait twice the one before
        ctx.uow.clock.advance(wait - second)
        assert await fire_due_deadlines(ctx) == 0  # not before its deadline
        ctx.uow.clock.advance(second)
        assert await fire_due_deadlines(ctx) == 1
        if attempt < ATTEMPTS:
            assert step_command(ctx, step) == command  # the same command: same step id, same amounts
            assert ctx.sagas.stored(saga_id).attempts() == attempt + 1
    saga = ctx.sagas.stored(saga_id)
    assert (saga.status, saga.step, sent(ctx)) == (NEEDS_ATTENTION, step, [])
    ctx.uow.clock.advance(TIMEOUT * 100)
    assert await fire_due_deadlines(ctx) == 0  # escalated once; no saga stays running past its deadline


@pytest.mark.parametrize(("kind", "step", "reply", "then", "next_command"), ROWS,
                         ids=[f"{r[0]}-{r[1]}-{r[2].__name__}" for r in ROWS])
async def test_a_saga_that_needs_attention_still_takes_its_steps_late_answer(kind, step, reply, then, next_command):
    ctx, saga_id, command = await given(kind, step)
    for attempt in range(1, ATTEMPTS + 1):
        await ctx.uow.commit()
        ctx.uow.clock.advance(TIMEOUT * 2 ** (attempt - 1))
        await fire_due_deadlines(ctx)
    assert ctx.sagas.stored(saga_id).status == NEEDS_ATTENTION
    await answer(ctx, reply(command))
    saga = ctx.sagas.stored(saga_id)
    assert saga.status == (RUNNING if next_command else then)


async def test_an_answer_in_time_voids_the_steps_deadline():
    ctx, saga_id, command = await given("fund", "charge")
    await answer(ctx, charged(command))
    await ctx.uow.commit()
    ctx.uow.clock.advance(TIMEOUT)
    assert await fire_due_deadlines(ctx) == 1  # the hold's deadline only
    assert step_command(ctx, "hold").hold_id == f"{saga_id}:hold"
    assert ctx.sagas.stored(saga_id).step_log[-1]["outcome"] == "resent"


async def test_the_hold_escrow_takes_on_the_charge_is_the_one_the_saga_sends_after_the_deadline():
    """Escrow holds on ClientCharged (platform_schemas.choreography.hold_for); the saga's own HoldEscrow, sent when
    no answer came in time, is the same step: the same step id, amounts and parties, so escrow holds once."""
    ctx = context()
    saga_id = await start(ctx, "fund")
    charge = step_command(ctx, "charge")
    await answer(ctx, charged(charge))
    assert sent(ctx) == []
    await ctx.uow.commit()
    ctx.uow.clock.advance(TIMEOUT)
    assert await fire_due_deadlines(ctx) == 1
    assert step_command(ctx, "hold") == hold_for(charged(charge))
    assert hold_for(charged(charge)).hold_id == f"{saga_id}:hold"


@pytest.mark.parametrize(("purpose", "milestones"), [("bonus", []), ("bonus", [("m-1", 10_000)]),
                                                     ("fixed_price", [])])
def test_a_charge_that_holds_nothing_implies_no_hold(purpose, milestones):
    charge = ChargeClient(charge_id="c:charge", saga_id="bonus-batch-2026-12-01", contract_id="c-1",
                          client_id="client-1", amount=10_000, currency="USD", purpose=purpose, description="bonuses",
                          milestones=[MilestoneAmount(milestone_id=m, amount=a) for m, a in milestones])
    assert hold_for(charged(charge)) is None


def _step_key(command_type: str) -> str:
    return {"HoldEscrow": "hold_id", "RefundCharge": "refund_id", "ChargeClient": "charge_id",
            "ReleaseEscrow": "release_id", "RefundEscrow": "refund_id"}[command_type]


@pytest.mark.parametrize(("kind", "step", "then"), [("refund", "gateway", COMPLETED), ("fund", "compensate", FAILED)])
async def test_a_refund_billing_keeps_for_an_operator_still_ends_the_saga_when_its_retry_succeeds(kind, step, then):
    ctx, saga_id, command = await given(kind, step)
    await answer(ctx, refund_refused(command))
    assert ctx.sagas.stored(saga_id).status == NEEDS_ATTENTION  # the client is owed money: someone looks
    await answer(ctx, charge_refunded(command))  # after the operator's RetryRefund
    assert ctx.sagas.stored(saga_id).status == then


async def test_a_failure_that_ends_a_step_is_taken_once_and_no_late_answer_follows_it():
    ctx, saga_id, command = await given("refund", "escrow")
    await answer(ctx, escrow_refund_refused(command))
    await answer(ctx, escrow_refunded(command))
    assert ctx.sagas.stored(saga_id).status == NEEDS_ATTENTION
