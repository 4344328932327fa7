"""The gateway loop's policy, given/expect: a fake gateway that answers from a script, a frozen clock moved to
each retry time the policy gives, and the verdict the work ends with. Calls carry the step id as key."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from platform_runtime.clock import FrozenClock

from billing.domain.gateway import Declined, GatewayCharge, GatewayUnavailable
from billing.domain.gateway_work import (
    GATEWAY_UNAVAILABLE, REFUND_DECLINED, Answered, ChargeStatus, RefundStatus, RetryPolicy, Unanswered, VoidStatus,
    charge_verdict, refund_verdict, void_verdict,
)
from billing.service_layer.gateway_calls import call_gateway

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
POLICY = RetryPolicy(backoff=timedelta(seconds=1), max_backoff=timedelta(seconds=8))
BOUND = timedelta(seconds=30)


class ScriptedGateway:
    """Answers each call from a script: 'ok', 'down' (no answer), 'slow' (no answer in time), 'declined',
    'charged-then-down' (takes the money, the answer is lost). The same key never charges twice."""

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.calls: list[str] = []
        self.charged: dict[str, int] = {}

    async def charge(self, idempotency_key: str, token: str, amount: int, currency: str) -> GatewayCharge:
        self.calls.append(idempotency_key)
        step = self.script.pop(0) if self.script else "ok"
        if step == "down":
            raise GatewayUnavailable("connection refused")
        if idempotency_key in self.charged:
            return GatewayCharge(f"ch-{idempotency_key}", amount, currency)
        if step == "declined":
            raise Declined("card_declined", "The card was declined.")
        if step == "slow":
            await asyncio.sleep(1)
        self.charged[idempotency_key] = amount
        if step == "charged-then-down":
            raise GatewayUnavailable("timed out after charging")
        return GatewayCharge(f"ch-{idempotency_key}", amount, currency)

    async def refund(self, idempotency_key: str, charge_reference: str, amount: int) -> str:
        self.calls.append(idempotency_key)
        step = self.script.pop(0) if self.script else "ok"
        if step == "declined":
            raise Declined("refund_refused", "The gateway refused the refund.")
        if step == "down":
            raise GatewayUnavailable("connection refused")
        return f"re-{idempotency_key}"


async def work_until_settled(gateway: ScriptedGateway, operation: str, verdict_of, timeout: float = 0.05):
    """The loop's life of one row: call, judge, wait for the retry time (the frozen clock jumps to it), again."""
    clock, attempts, called_at = FrozenClock(T0), 0, []
    give_up_at = T0 + BOUND
    while True:
        called_at.append(clock.now() - T0)
        if operation == "charge":
            answer = await call_gateway("charge", lambda: _reference(gateway.charge("step-1", "tok", 500, "USD")),
                                        timeout)
        else:
            answer = await call_gateway("refund", lambda: gateway.refund("step-1", "ch-1", 500), timeout)
        attempts += 1
        verdict = verdict_of(answer, attempts, clock.now(), give_up_at, POLICY)
        if verdict.settled:
            return verdict, called_at
        assert verdict.retry_at > clock.now()
        clock.advance(verdict.retry_at - clock.now())


async def _reference(charging) -> str:
    return (await charging).reference


def seconds(*values: float) -> list[timedelta]:
    return [timedelta(seconds=v) for v in values]


# -- charges --------------------------------------------------------------------------------------


async def test_a_charge_the_gateway_answers_at_once_succeeds_after_one_call():
    gateway = ScriptedGateway("ok")
    verdict, called_at = await work_until_settled(gateway, "charge", charge_verdict)
    assert (verdict.status, verdict.reference, called_at) == (ChargeStatus.SUCCEEDED, "ch-step-1", seconds(0))


async def test_an_unanswered_charge_is_asked_again_with_the_same_key_after_a_doubling_backoff():
    gateway = ScriptedGateway("down", "down", "down", "ok")
    verdict, called_at = await work_until_settled(gateway, "charge", charge_verdict)
    assert verdict.status == ChargeStatus.SUCCEEDED
    assert called_at == seconds(0, 1, 3, 7)  # waits of 1, 2, 4 seconds
    assert gateway.calls == ["step-1"] * 4 and gateway.charged == {"step-1": 500}


async def test_the_backoff_stops_growing_at_its_ceiling():
    gateway = ScriptedGateway(*["down"] * 5, "ok")
    _, called_at = await work_until_settled(gateway, "charge", charge_verdict)
    waits = [b - a for a, b in zip(called_at, called_at[1:])]
    assert waits == seconds(1, 2, 4, 8, 8)


async def test_a_gateway_down_past_the_bound_fails_the_charge_as_gateway_unavailable_after_a_last_call_at_the_bound():
    gateway = ScriptedGateway(*["down"] * 100)
    verdict, called_at = await work_until_settled(gateway, "charge", charge_verdict)
    assert (verdict.status, verdict.reason_code, verdict.retryable) == (ChargeStatus.FAILED, GATEWAY_UNAVAILABLE, True)
    assert called_at == seconds(0, 1, 3, 7, 15, 23, 30)  # the last call exactly at the bound, none after
    assert "7 attempts" in verdict.message and gateway.charged == {}


async def test_a_declined_charge_fails_at_once_and_is_not_asked_again():
    gateway = ScriptedGateway("declined")
    verdict, called_at = await work_until_settled(gateway, "charge", charge_verdict)
    assert (verdict.status, verdict.reason_code, verdict.retryable) == (ChargeStatus.FAILED, "card_declined", False)
    assert called_at == seconds(0)


async def test_a_charge_whose_answer_was_lost_is_found_by_its_key_on_the_retry_and_made_once():
    gateway = ScriptedGateway("charged-then-down", "ok")  # tok_timeoutAfterCharge
    verdict, called_at = await work_until_settled(gateway, "charge", charge_verdict)
    assert verdict.status == ChargeStatus.SUCCEEDED and called_at == seconds(0, 1)
    assert gateway.charged == {"step-1": 500}


async def test_a_call_slower_than_the_call_timeout_counts_as_unanswered():
    gateway = ScriptedGateway("slow", "ok")
    verdict, called_at = await work_until_settled(gateway, "charge", charge_verdict, timeout=0.01)
    assert verdict.status == ChargeStatus.SUCCEEDED and called_at == seconds(0, 1)


# -- refunds --------------------------------------------------------------------------------------


async def test_an_unanswered_refund_is_retried_like_a_charge_and_then_refunded():
    gateway = ScriptedGateway("down", "down", "ok")
    verdict, called_at = await work_until_settled(gateway, "refund", refund_verdict)
    assert (verdict.status, verdict.reference, called_at) == (RefundStatus.REFUNDED, "re-step-1", seconds(0, 1, 3))


async def test_a_refund_the_gateway_refuses_needs_attention_at_once():
    gateway = ScriptedGateway("declined")
    verdict, called_at = await work_until_settled(gateway, "refund", refund_verdict)
    assert (verdict.status, verdict.reason_code, verdict.retryable) == (
        RefundStatus.NEEDS_ATTENTION, REFUND_DECLINED, True)
    assert "refund_refused" in verdict.message and called_at == seconds(0)


async def test_a_refund_unanswered_past_the_bound_needs_attention_and_is_never_dropped():
    gateway = ScriptedGateway(*["down"] * 100)
    verdict, called_at = await work_until_settled(gateway, "refund", refund_verdict)
    assert (verdict.status, verdict.reason_code) == (RefundStatus.NEEDS_ATTENTION, GATEWAY_UNAVAILABLE)
    assert called_at[-1] == BOUND


# -- voids ----------------------------------------------------------------------------------------


def test_a_void_is_asked_again_after_the_capped_backoff_for_as_long_as_it_takes_and_never_given_up():
    far = T0 + timedelta(days=3)
    again = void_verdict(Unanswered("down"), 50, far, POLICY)
    assert (again.status, again.retry_at) == (VoidStatus.PENDING, far + timedelta(seconds=8))
    done = void_verdict(Answered("ch-1"), 51, far, POLICY)
    assert (done.status, done.reference, done.settled) == (VoidStatus.DONE, "ch-1", True)


async def test_a_charge_whose_answer_was_lost_before_an_outage_is_given_up_though_it_was_made_hence_the_void():
    gateway = ScriptedGateway("charged-then-down", *["down"] * 100)
    verdict, _ = await work_until_settled(gateway, "charge", charge_verdict)
    assert verdict.reason_code == GATEWAY_UNAVAILABLE and gateway.charged == {"step-1": 500}


# -- the policy alone -----------------------------------------------------------------------------

POLICY_CASES = [
    # (unanswered calls so far, seconds since the work was recorded, when to call again; None: give up)
    (1, 0, 1),
    (2, 1, 3),
    (3, 3, 7),
    (5, 15, 23),
    (6, 23, 30),  # capped by the bound, not by the backoff (23 + 8 > 30)
    (7, 30, None),
    (1, 29.5, 30),
    (1, 31, None),
]


@pytest.mark.parametrize("attempts, elapsed, expected", POLICY_CASES)
def test_the_retry_policy_waits_and_gives_up_at_the_bound(attempts, elapsed, expected):
    now = T0 + timedelta(seconds=elapsed)
    got = POLICY.next_attempt_at(attempts, now, T0 + BOUND)
    assert got == (None if expected is None else T0 + timedelta(seconds=expected))


# -- billing's failure replies (a step refused, or not handled after every retry) -------------------


def test_a_charge_or_refund_step_that_cannot_be_handled_is_answered_with_its_typed_failure():
    from platform_schemas.commands.saga import ChargeClient, RefundCharge

    from billing.service_layer.failures import failure_reply

    charge = ChargeClient(charge_id="fund-1:charge", saga_id="fund-1", contract_id="c-1", client_id="cl-1",
                          amount=500, currency="USD", description="m-1")
    refund = RefundCharge(refund_id="refund-1:gateway", charge_id="fund-1:charge", saga_id="refund-1",
                          contract_id="c-1", client_id="cl-1", amount=500, currency="USD", milestone_id="m-1",
                          description="m-1")
    failed = failure_reply(charge, "processing_failed", "boom", False)
    assert (type(failed).__name__, failed.step_id, failed.saga_id, failed.consecutive_failures) == (
        "ChargeFailed", "fund-1:charge", "fund-1", 0)
    refused = failure_reply(refund, "processing_failed", "boom", False)
    assert (type(refused).__name__, refused.step_id, refused.charge_id, refused.retryable) == (
        "RefundChargeFailed", "refund-1:gateway", "fund-1:charge", False)
