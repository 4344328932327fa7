"""Facts of the escrow ledger on `escrow.events`; each carries the postings it made."""

from datetime import date

from pydantic import Field

from ..commands.saga import MilestoneAmount
from ..types import Amount, Currency, Event, Id, Posting


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


class EscrowHoldRejected(Event):
    """Reply to HoldEscrow when the ledger refuses it (e.g. currency differs from the contract's)."""

    hold_id: Id
    saga_id: str
    charge_id: Id
    contract_id: Id
    reason_code: str
    message: str


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


class EscrowRefunded(Event):
    refund_id: Id
    saga_id: str
    contract_id: Id
    milestone_id: Id
    client_id: Id
    amount: Amount
    currency: Currency
    postings: list[Posting]


class BonusPosted(Event):
    bonus_id: Id
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    charge_id: Id
    postings: list[Posting]


class BonusesPosted(Event):
    """Reply to PostBonuses: these bonuses are on the ledger (each has its own `BonusPosted` with its postings)."""

    business_date: date
    bonus_ids: list[Id] = Field(min_length=1, max_length=500)
