"""Facts the contracts service publishes on `contracts.events`."""

from datetime import date
from typing import Literal

from pydantic import Field

from ..commands.contracts import Deposit
from ..types import Amount, Currency, Event, Id, NonNegativeAmount, Role, UtcDateTime

# -- accounts -------------------------------------------------------------------------------


class AccountRegistered(Event):
    account_id: Id
    role: Role
    name: str
    email: str


class AccountSuspended(Event):
    account_id: Id
    reason: str
    appealable: bool
    automatic: bool = False


class ReactivationRequested(Event):
    account_id: Id


class AccountReactivated(Event):
    account_id: Id


class ReactivationRefused(Event):
    account_id: Id
    reason_code: str
    message: str


class AccountMarkedInactive(Event):
    account_id: Id
    last_activity_at: UtcDateTime


# -- offers and contracts -------------------------------------------------------------------


class MilestoneTerms(Event):
    milestone_id: Id
    title: str
    amount: Amount
    due_date: date | None = None


class OfferSent(Event):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    title: str
    currency: Currency
    milestones: list[MilestoneTerms]
    deposit: Deposit
    deposited_amount: Amount


class OfferFundingFailed(Event):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    currency: Currency
    amount: Amount
    reason_code: str
    message: str
    title: str | None = None


class OfferWithdrawn(Event):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    refunded_amount: Amount
    currency: Currency


class OfferDeclined(Event):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    reason: str | None = None
    refunded_amount: Amount
    currency: Currency


class ContractStarted(Event):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    currency: Currency


class ContractEnded(Event):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    ended_by: str
    refunded_amount: Amount = 0
    currency: Currency


class ContractCancelled(Event):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    reason: str
    refunded_amount: Amount
    released_amount: Amount = 0
    currency: Currency


# -- milestones -----------------------------------------------------------------------------


class MilestoneAdded(Event):
    contract_id: Id
    milestone_id: Id
    title: str
    amount: Amount
    currency: Currency
    due_date: date | None = None


class MilestoneEdited(Event):
    contract_id: Id
    milestone_id: Id
    title: str
    amount: Amount
    currency: Currency
    due_date: date | None = None


class MilestoneRemoved(Event):
    contract_id: Id
    milestone_id: Id


class MilestoneFunded(Event):
    contract_id: Id
    milestone_id: Id
    amount: Amount
    currency: Currency
    charge_id: Id


class MilestoneFundingFailed(Event):
    contract_id: Id
    milestone_id: Id
    amount: Amount
    currency: Currency
    reason_code: str
    message: str


UpcomingKind = Literal["auto_release", "refund_request_deadline", "earning_available", "bonus_charge",
                      "bonus_payment"]
MAX_UPCOMING_IN_EVENT = 10


class UpcomingItem(Event):
    """One dated thing ahead of a person (GET /accounts/{id}/upcoming lists them, soonest first)."""

    kind: UpcomingKind
    at: UtcDateTime | None = Field(None, description="None: a bonus batch with the daily schedule off")
    contract_id: Id | None = None
    milestone_id: Id | None = None
    bonus_id: Id | None = None
    amount: Amount
    currency: Currency
    reminder_at: UtcDateTime | None = Field(None, description="auto_release: when the client is reminded")
    bonuses: int | None = Field(None, description="bonus_charge: how many bonuses the charge is for")


class WorkSubmitted(Event):
    contract_id: Id
    milestone_id: Id
    client_id: Id
    freelancer_id: Id
    message: str
    review_due_at: UtcDateTime
    review_reminder_at: UtcDateTime | None = None
    client_upcoming: list[UpcomingItem] = Field(default_factory=list, max_length=MAX_UPCOMING_IN_EVENT,
                                                description="What is coming up for the client, soonest first")
    freelancer_upcoming: list[UpcomingItem] = Field(default_factory=list, max_length=MAX_UPCOMING_IN_EVENT,
                                                    description="What is coming up for the freelancer")


class ChangesRequested(Event):
    contract_id: Id
    milestone_id: Id
    client_id: Id
    freelancer_id: Id
    message: str


class ReviewPeriodEndingSoon(Event):
    contract_id: Id
    milestone_id: Id
    client_id: Id
    review_due_at: UtcDateTime


class MilestoneApproved(Event):
    contract_id: Id
    milestone_id: Id
    amount: Amount
    currency: Currency


class MilestoneAutoReleased(Event):
    contract_id: Id
    milestone_id: Id
    amount: Amount
    currency: Currency
    review_due_at: UtcDateTime


class MilestonePaid(Event):
    contract_id: Id
    milestone_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    automatic: bool = False


class MilestoneRefunded(Event):
    contract_id: Id
    milestone_id: Id
    client_id: Id
    amount: Amount
    currency: Currency


# -- bonuses, refunds, disputes -------------------------------------------------------------


class BonusGiven(Event):
    contract_id: Id
    bonus_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    note: str
    business_date: date
    given_at: UtcDateTime


class RefundRequested(Event):
    contract_id: Id
    milestone_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    respond_by: UtcDateTime


class RefundAccepted(Event):
    contract_id: Id
    milestone_id: Id
    amount: Amount
    currency: Currency


class DisputeOpened(Event):
    contract_id: Id
    milestone_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    resolve_by: UtcDateTime | None = Field(None, description="When it becomes overdue (DISPUTE_RESOLVE_WITHIN)")


class DisputeOverdue(Event):
    """A dispute still open `DISPUTE_RESOLVE_WITHIN` after it was opened: flagged, no money moves."""

    contract_id: Id
    milestone_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    opened_at: UtcDateTime
    resolve_by: UtcDateTime


class DisputeResolved(Event):
    contract_id: Id
    milestone_id: Id
    release_amount: NonNegativeAmount
    refund_amount: NonNegativeAmount
    currency: Currency
    resolved_by: str = Field(description="admin:<name>")


