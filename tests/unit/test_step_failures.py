"""Every saga step gets an answer: a participant's typed failure replies, on fakes.

The runtime's CommandDispatcher and BatchProcessor run unchanged with escrow's own failure-reply
builder (escrow/service_layer/failures.py); the step handler is a stand-in that refuses or crashes.
"""

import pytest
from platform_runtime.consumer import BatchProcessor
from platform_runtime.dispatch import CommandDispatcher
from platform_runtime.errors import Rejected
from platform_schemas import Envelope, new_envelope
from platform_schemas.commands.saga import HoldEscrow, MilestoneAmount, RefundEscrow, ReleaseEscrow
from platform_schemas.topics import ESCROW_EVENTS, ESCROW_SAGA_COMMANDS

from escrow.service_layer.failures import failure_reply
from tests.support.fakes import FakeDeadLetters, FakeStore, FakeUnitOfWork, record

pytestmark = pytest.mark.unit

HOLD = HoldEscrow(hold_id="fund-1:hold", saga_id="fund-1", charge_id="fund-1:charge", contract_id="c-1",
                  client_id="client-1", currency="USD", milestones=[MilestoneAmount(milestone_id="m-1", amount=500)])
RELEASE = ReleaseEscrow(release_id="release-1:release", saga_id="release-1", contract_id="c-1", milestone_id="m-1",
                        client_id="client-1", freelancer_id="free-1", amount=500, currency="USD")
REFUND = RefundEscrow(refund_id="refund-1:escrow", saga_id="refund-1", contract_id="c-1", milestone_id="m-1",
                      client_id="client-1", amount=500, currency="USD")


class Step:
    """A participant step that refuses, crashes or succeeds, and counts its calls."""

    def __init__(self, refuse: str | None = None, crash: bool = False) -> None:
        self.refuse, self.crash, self.calls = refuse, crash, 0

    async def __call__(self, cmd, ctx) -> None:
        self.calls += 1
        ctx.uow.publish(ESCROW_EVENTS, cmd, subject=cmd.contract_id)  # an effect that must not survive a failure
        if self.refuse:
            raise Rejected(self.refuse, f"refused: {self.refuse}")
        if self.crash:
            raise RuntimeError("bug in the step")


def participant(step: Step) -> CommandDispatcher:
    handlers = {HoldEscrow: step, ReleaseEscrow: step, RefundEscrow: step}
    return CommandDispatcher(ESCROW_SAGA_COMMANDS, handlers, ESCROW_EVENTS, failure_reply=failure_reply)


def sent(cmd) -> Envelope:
    """The saga's command as it travels; each (re-)send is a new envelope with the same step id."""
    return new_envelope(cmd, subject=cmd.contract_id, actor="system", source="contracts")


@pytest.mark.parametrize(("cmd", "failure", "step_id"), [
    (HOLD, "EscrowHoldRejected", HOLD.hold_id),
    (RELEASE, "EscrowReleaseFailed", RELEASE.release_id),
    (REFUND, "EscrowRefundFailed", REFUND.refund_id),
], ids=["hold", "release", "refund"])
async def test_a_refused_step_is_answered_with_its_typed_failure_not_command_rejected(cmd, failure, step_id):
    uow = FakeUnitOfWork(service="escrow")
    await participant(Step(refuse="currency_mismatch")).dispatch(sent(cmd), uow)
    assert uow.types() == [failure]
    reply = uow.messages()[0].data
    assert (reply["saga_id"], reply["step_id"], reply["reason_code"], reply["retryable"]) == \
        (cmd.saga_id, step_id, "currency_mismatch", False)


async def test_a_step_answered_as_failed_gets_the_same_answer_when_sent_again_and_is_not_done_late():
    store = FakeStore()
    first = FakeUnitOfWork(store, service="escrow")
    await participant(Step(refuse="currency_mismatch")).dispatch(sent(HOLD), first)
    await first.commit()
    succeeds_now = Step()
    again = FakeUnitOfWork(store, service="escrow")
    await participant(succeeds_now).dispatch(sent(HOLD), again)
    assert succeeds_now.calls == 0
    assert again.types() == ["EscrowHoldRejected"]
    assert again.messages()[0].data["reason_code"] == "currency_mismatch"


def batch_consumer(dispatcher: CommandDispatcher, store: FakeStore) -> BatchProcessor:
    return BatchProcessor(topic=ESCROW_SAGA_COMMANDS, dispatch=dispatcher.dispatch,
                          new_uow=lambda: FakeUnitOfWork(store, service="escrow"), dead_letters=FakeDeadLetters(),
                          max_attempts=2, backoff_seconds=0.001, give_up=dispatcher.give_up,
                          claim_status=dispatcher.claim_status, prefetch=dispatcher.prefetch,
                          kept_answers=dispatcher.kept_answers)


@pytest.mark.parametrize("batch", [[HOLD, RELEASE], [HOLD]], ids=["a batch", "a lone step"])
async def test_a_step_answered_as_failed_before_is_looked_up_with_the_batchs_claims(batch):
    store = FakeStore()
    first = FakeUnitOfWork(store, service="escrow")
    await participant(Step(refuse="currency_mismatch")).dispatch(sent(HOLD), first)
    await first.commit()
    succeeds_now = Step()
    uows = []

    def counting() -> FakeUnitOfWork:
        uows.append(FakeUnitOfWork(store, service="escrow"))
        return uows[-1]

    dispatcher = participant(succeeds_now)
    consumer = batch_consumer(dispatcher, store)
    consumer.new_uow = counting
    await consumer.process([record(sent(cmd).to_json(), i, topic=ESCROW_SAGA_COMMANDS) for i, cmd in enumerate(batch)])
    keys = {"HoldEscrow": f"failed-step:{HOLD.hold_id}", "ReleaseEscrow": f"failed-step:{RELEASE.release_id}"}
    assert [uow.claimed_with for uow in uows] == [[[keys[type(cmd).__name__] for cmd in batch]]]  # one try, one claim
    if len(batch) == 1:
        assert succeeds_now.calls == 0 and store.outbox[-1].envelope.type == "EscrowHoldRejected"
        return
    assert succeeds_now.calls == 1  # the release only: the hold is answered as it was before
    assert [o.envelope.type for o in store.outbox][-2:] == ["EscrowHoldRejected", "ReleaseEscrow"]


async def test_a_step_refused_in_a_batch_is_not_done_when_sent_again_later_in_the_same_batch():
    store = FakeStore()
    first, resent = sent(HOLD), sent(HOLD)

    class RefusesTheFirstSend(Step):
        async def __call__(self, cmd, ctx) -> None:
            self.refuse = "currency_mismatch" if ctx.envelope.id == first.id else None
            await super().__call__(cmd, ctx)

    step = RefusesTheFirstSend()
    await batch_consumer(participant(step), store).process(
        [record(first.to_json(), 0, topic=ESCROW_SAGA_COMMANDS), record(resent.to_json(), 1, topic=ESCROW_SAGA_COMMANDS)])
    assert [o.envelope.type for o in store.outbox] == ["EscrowHoldRejected", "EscrowHoldRejected"]


async def test_a_step_that_fails_every_attempt_is_answered_as_failed_before_it_is_dead_lettered():
    store, dead = FakeStore(), FakeDeadLetters()
    dispatcher = participant(Step(crash=True))
    order = []

    class Recording(FakeDeadLetters):
        async def send(self, rec, error, attempts):
            order.append(("dead_letter", [o.envelope.type for o in store.outbox]))
            await dead.send(rec, error, attempts)

    consumer = BatchProcessor(topic=ESCROW_SAGA_COMMANDS, dispatch=dispatcher.dispatch,
                              new_uow=lambda: FakeUnitOfWork(store, service="escrow"), dead_letters=Recording(),
                              max_attempts=2, backoff_seconds=0.001, give_up=dispatcher.give_up)
    command = sent(HOLD)
    await consumer.process([record(command.to_json(), 0, topic=ESCROW_SAGA_COMMANDS)])
    assert order == [("dead_letter", ["EscrowHoldRejected"])]  # the answer was committed first
    reply = store.outbox[0].envelope
    assert reply.data["reason_code"] == "processing_failed" and reply.data["step_id"] == HOLD.hold_id
    assert reply.causationid == command.id
    assert store.inbox[command.id]["outcome"]["type"] == "EscrowHoldRejected"
    assert dead.offsets == [0]


async def test_a_message_that_is_no_saga_step_is_only_dead_lettered():
    store = FakeStore()
    dispatcher = CommandDispatcher(ESCROW_SAGA_COMMANDS, {HoldEscrow: Step(crash=True)}, ESCROW_EVENTS)
    uow = FakeUnitOfWork(store, service="escrow")
    assert await dispatcher.give_up(sent(HOLD), RuntimeError("x"), uow) is False
    assert uow.types() == []
