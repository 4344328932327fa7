"""Where a bonus batch, each of its bonuses and each of its charges stand, and what moves them: tables. Pure.

    batch   collecting --collected--> charging --settled--> completed
    bonus   pending --take--> taken --charged--> charged --credit--> crediting --posted--> paid
                                    --declined--> declined --fail--> failed
                                                           --owe--> past_due --retry--> taken (a later batch)
    charge  pending --answered--> succeeded | --refused / given_up--> failed
            given_up also opens its void (void_status pending --answered--> done, the gateway loop): until it is
            done the charge's bonuses stay past_due and no batch takes them for their retry

The runner (service_layer/bonus_batch_runner.py) asks these tables for every move it makes, so a move that
is not here cannot happen.
"""

from enum import StrEnum


class BatchStatus(StrEnum):
    COLLECTING = "collecting"
    CHARGING = "charging"
    COMPLETED = "completed"


class BatchEvent(StrEnum):
    COLLECTED = "collected"  # every bonus given before the cutoff is taken and summed into charges
    SETTLED = "settled"  # every bonus of the batch is paid or failed


class BonusStatus(StrEnum):
    PENDING = "pending"
    TAKEN = "taken"
    CHARGED = "charged"
    DECLINED = "declined"
    CREDITING = "crediting"
    PAID = "paid"
    FAILED = "failed"
    PAST_DUE = "past_due"  # its declined charge is owed; a later day's batch retries it


class BonusEvent(StrEnum):
    TAKE = "take"  # a batch takes it
    CHARGED = "charged"  # its client's charge succeeded
    DECLINED = "declined"  # its client's charge failed (declined, no card, or the gateway never answered)
    CREDIT = "credit"  # asked of escrow (PostBonuses)
    POSTED = "posted"  # escrow posted it (BonusesPosted)
    FAIL = "fail"  # its client is told (BonusFailed): declined on the last day it may be retried
    OWE = "owe"  # declined before that day: a past-due balance of its client
    RETRY = "retry"  # a later day's batch takes it again, into that day's charge


class ChargeStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ChargeEvent(StrEnum):
    ANSWERED = "answered"
    REFUSED = "refused"
    GIVEN_UP = "given_up"  # no answer within the gateway policy's bound


BATCH: dict[tuple[BatchStatus, BatchEvent], BatchStatus] = {
    (BatchStatus.COLLECTING, BatchEvent.COLLECTED): BatchStatus.CHARGING,
    (BatchStatus.CHARGING, BatchEvent.SETTLED): BatchStatus.COMPLETED,
}
BONUS: dict[tuple[BonusStatus, BonusEvent], BonusStatus] = {
    (BonusStatus.PENDING, BonusEvent.TAKE): BonusStatus.TAKEN,
    (BonusStatus.TAKEN, BonusEvent.CHARGED): BonusStatus.CHARGED,
    (BonusStatus.TAKEN, BonusEvent.DECLINED): BonusStatus.DECLINED,
    (BonusStatus.CHARGED, BonusEvent.CREDIT): BonusStatus.CREDITING,
    (BonusStatus.CREDITING, BonusEvent.POSTED): BonusStatus.PAID,
    (BonusStatus.DECLINED, BonusEvent.FAIL): BonusStatus.FAILED,
    (BonusStatus.DECLINED, BonusEvent.OWE): BonusStatus.PAST_DUE,
    (BonusStatus.PAST_DUE, BonusEvent.RETRY): BonusStatus.TAKEN,
}
CHARGE: dict[tuple[ChargeStatus, ChargeEvent], ChargeStatus] = {
    (ChargeStatus.PENDING, ChargeEvent.ANSWERED): ChargeStatus.SUCCEEDED,
    (ChargeStatus.PENDING, ChargeEvent.REFUSED): ChargeStatus.FAILED,
    (ChargeStatus.PENDING, ChargeEvent.GIVEN_UP): ChargeStatus.FAILED,
}

# Settled for its batch: past due is owed, and retried by a later batch, not this one.
SETTLED_BONUS = (BonusStatus.PAID, BonusStatus.FAILED, BonusStatus.PAST_DUE)
OPEN_BATCH = (BatchStatus.COLLECTING, BatchStatus.CHARGING)


class InvalidTransition(Exception):
    """A move the tables do not have: a bug in the runner, never a user's doing."""


def after(table: dict, status: StrEnum, event: StrEnum):
    """The status `event` moves `status` to, by `table`."""
    try:
        return table[(status, event)]
    except KeyError:
        raise InvalidTransition(f"{event} is not a move from {status}") from None


def source_of(table: dict, event: StrEnum, target: StrEnum | None = None):
    """The one status `event` moves from (to `target`, where several lead to it): what the runner claims."""
    sources = {s for (s, e), t in table.items() if e == event and target in (None, t)}
    if len(sources) != 1:
        raise InvalidTransition(f"{event} moves from {sorted(sources) or 'nothing'}")
    return sources.pop()


def bonus_move(event: BonusEvent) -> tuple[BonusStatus, BonusStatus]:
    """(from, to) of a bonus for `event`: every bonus move has one source."""
    source = source_of(BONUS, event)
    return source, BONUS[(source, event)]
