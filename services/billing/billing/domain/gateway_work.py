"""The gateway's work, pure: where a charge or a refund stands, and the one retry policy of every gateway call.

A call that the gateway answers ends the work (charged, refunded, or declined). A call it does not answer
(an error, a timeout: the outcome is unknown) is made again with the same idempotency key, after a backoff
that doubles up to a ceiling, until the work's bound (`give_up_at`) is reached. Then a charge ends as failed
(`gateway_unavailable`: the saga can go on without the money) and a refund as `needs_attention` (money owed
to a client is never dropped: an operator retries it).

A charge given up may still have been made by a call whose answer was lost (a timeout during the outage's
onset): so it is voided, by its key, once the gateway answers again. A void is asked again for as long as it
takes (after the capped backoff), never given up: a client told "not charged" must not stay charged.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from .failed_charges import GATEWAY_UNAVAILABLE, NO_PRIMARY_METHOD  # noqa: F401 - reason codes of the work


class Operation(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"
    VOID = "void"  # of a charge given up
    BONUS_VOID = "bonus_void"  # of a bonus batch's charge given up


class ChargeStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RefundStatus(StrEnum):
    PENDING = "pending"
    REFUNDED = "refunded"
    NEEDS_ATTENTION = "needs_attention"


class VoidStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"


# Open work, by operation: what /gateway-work lists and the `gateway_work` gauge counts.
OPEN: dict[Operation, tuple[str, ...]] = {
    Operation.CHARGE: (ChargeStatus.PENDING,),
    Operation.REFUND: (RefundStatus.PENDING, RefundStatus.NEEDS_ATTENTION),
    Operation.VOID: (VoidStatus.PENDING,),
    Operation.BONUS_VOID: (VoidStatus.PENDING,),
}

REFUND_DECLINED = "refund_declined"
NOT_FOUND = "not_found"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff from `backoff` up to `max_backoff`, within a bounded total time."""

    backoff: timedelta
    max_backoff: timedelta

    def delay(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th unanswered call (1, 2, 4 … times `backoff`, at most `max_backoff`)."""
        doublings = min(max(attempts - 1, 0), 32)  # a void is asked for as long as it takes: no overflow
        return min(self.backoff * 2 ** doublings, self.max_backoff)

    def next_attempt_at(self, attempts: int, now: datetime, give_up_at: datetime) -> datetime | None:
        """When to call again after `attempts` unanswered calls; None once the bound is reached.

        The last call is made at the bound itself, so the work is given up only after a call at or past it."""
        if now >= give_up_at:
            return None
        return min(now + self.delay(attempts), give_up_at)


@dataclass(frozen=True)
class Answered:
    reference: str


@dataclass(frozen=True)
class Refused:
    """The gateway said no (a declined card, a refund it will not make): asking again changes nothing."""

    reason_code: str
    message: str


@dataclass(frozen=True)
class Unanswered:
    """An error or a timeout: the outcome is unknown; the same key may be asked again."""

    error: str


GatewayAnswer = Answered | Refused | Unanswered


@dataclass(frozen=True)
class Verdict:
    """What becomes of the work after one call: its new status, or when to call again."""

    status: str
    retry_at: datetime | None = None
    reference: str | None = None
    reason_code: str | None = None
    message: str | None = None
    retryable: bool = False

    @property
    def settled(self) -> bool:
        return self.retry_at is None


def charge_verdict(answer: GatewayAnswer, attempts: int, now: datetime, give_up_at: datetime,
                   policy: RetryPolicy) -> Verdict:
    """A charge after its `attempts`-th call."""
    match answer:
        case Answered(reference):
            return Verdict(ChargeStatus.SUCCEEDED, reference=reference)
        case Refused(reason_code, message):
            return Verdict(ChargeStatus.FAILED, reason_code=reason_code, message=message)
        case Unanswered(error):
            retry_at = policy.next_attempt_at(attempts, now, give_up_at)
            if retry_at is not None:
                return Verdict(ChargeStatus.PENDING, retry_at=retry_at)
            return Verdict(ChargeStatus.FAILED, reason_code=GATEWAY_UNAVAILABLE, retryable=True,
                           message=f"the payment gateway did not answer in time ({attempts} attempts; last: {error})"[:2000])
    raise TypeError(answer)


def refund_verdict(answer: GatewayAnswer, attempts: int, now: datetime, give_up_at: datetime,
                   policy: RetryPolicy) -> Verdict:
    """A refund after its `attempts`-th call: a refusal or a spent bound needs an operator, never a drop."""
    match answer:
        case Answered(reference):
            return Verdict(RefundStatus.REFUNDED, reference=reference)
        case Refused(reason_code, message):
            return Verdict(RefundStatus.NEEDS_ATTENTION, reason_code=REFUND_DECLINED, retryable=True,
                           message=f"the payment gateway refused the refund ({reason_code}: {message})"[:2000])
        case Unanswered(error):
            retry_at = policy.next_attempt_at(attempts, now, give_up_at)
            if retry_at is not None:
                return Verdict(RefundStatus.PENDING, retry_at=retry_at)
            return Verdict(RefundStatus.NEEDS_ATTENTION, reason_code=GATEWAY_UNAVAILABLE, retryable=True,
                           message=f"the payment gateway did not answer in time ({attempts} attempts; last: {error})"[:2000])
    raise TypeError(answer)


def void_verdict(answer: GatewayAnswer, attempts: int, now: datetime, policy: RetryPolicy) -> Verdict:
    """A void after its `attempts`-th call: done once the gateway answers, else asked again, without a bound."""
    if isinstance(answer, Answered):
        return Verdict(VoidStatus.DONE, reference=answer.reference)
    return Verdict(VoidStatus.PENDING, retry_at=now + policy.delay(attempts))
