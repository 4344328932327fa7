"""Facts of the escrow ledger on `escrow.events`; each carries the postings it made."""

from datetime import date

from pydantic import Field

from ..commands.saga import MAX_BONUSES_PER_POST, MilestoneAmount
from ..types import Amount, Currency, Event, Id, Posting, UtcDateTime
from .common import StepFailed

AVAILABLE_AT = Field(None, description="When the freelancer's earning moves from pending to available "
                                       "(released + the earnings security period, EARNINGS_PENDING_FOR)")


class EscrowFunded(Event):
    hold_id: Id
    saga_id: str
    charge_id: Id
    contract_id: Id
    client_id: Id
    currency: Currency
    amount: Amount
    milestones: list[MilestoneAmount]
    postings: list[Posting]


class EscrowHoldRejected(StepFailed):
    """The hold step's failure reply (e.g. the currency differs from the contract's): nothing is held.
    Its name predates the `<Step>Failed` convention and is kept; its fields are those of every step failure."""

    hold_id: Id
    charge_id: Id
    contract_id: Id


class EscrowReleased(Event):
    release_id: Id
    saga_id: str
    contract_id: Id
    milestone_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    postings: list[Posting]
    available_at: UtcDateTime | None = AVAILABLE_AT


class EscrowRefunded(Event):
    refund_id: Id
    saga_id: str
    contract_id: Id
    milestone_id: Id
    client_id: Id
    amount: Amount
    currency: Currency
    postings: list[Posting]


class EscrowReleaseFailed(StepFailed):
    """The release step's failure reply: nothing left the milestone's holding."""

    release_id: Id
    contract_id: Id
    milestone_id: Id


class EscrowRefundFailed(StepFailed):
    """The refund-from-escrow step's failure reply: nothing left the milestone's holding."""

    refund_id: Id
    contract_id: Id
    milestone_id: Id


class BonusPosted(Event):
    bonus_id: Id
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    charge_id: Id
    postings: list[Posting]
    available_at: UtcDateTime | None = AVAILABLE_AT


class BonusesPosted(Event):
    """Reply to PostBonuses: these bonuses are on the ledger (each has its own `BonusPosted` with its postings)."""

    business_date: date
    bonus_ids: list[Id] = Field(min_length=1, max_length=MAX_BONUSES_PER_POST)
    available_at: UtcDateTime | None = AVAILABLE_AT


class BonusPostingFailed(StepFailed):
    """Reply to PostBonuses when escrow could not post them: none of these bonuses was credited by it."""

    business_date: date
    bonus_ids: list[Id] = Field(min_length=1, max_length=MAX_BONUSES_PER_POST)


class EarningAvailable(Event):
    """A released payment or bonus is past its security period: pending -> available in the ledger.

    `earning_id` is the ledger transaction that credited it (the release id or the bonus id)."""

    earning_id: Id
    contract_id: Id
    milestone_id: Id | None = None
    bonus_id: Id | None = None
    freelancer_id: Id
    amount: Amount
    currency: Currency
    available_at: UtcDateTime
    postings: list[Posting]
