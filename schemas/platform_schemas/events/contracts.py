"""Facts the contracts service publishes on `contracts.events`."""

from datetime import date

from pydantic import Field

from ..commands.contracts import Deposit
from ..types import Amount, Currency, Id, Message, NonNegativeAmount, Role, UtcDateTime

# -- accounts -------------------------------------------------------------------------------


class AccountRegistered(Message):
    account_id: Id
    role: Role
    name: str
    email: str


class AccountSuspended(Message):
    account_id: Id
    reason: str
    appealable: bool
    automatic: bool = False


class ReactivationRequested(Message):
    account_id: Id


class AccountReactivated(Message):
    account_id: Id


class ReactivationRefused(Message):
    account_id: Id
    reason_code: str
    message: str


class AccountMarkedInactive(Message):
    account_id: Id
    last_activity_at: UtcDateTime


# -- offers and contracts -------------------------------------------------------------------


class MilestoneTerms(Message):
    milestone_id: Id
    title: str
    amount: Amount
    due_date: date | None = None


class OfferSent(Message):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    title: str
    currency: Currency
    milestones: list[MilestoneTerms]
    deposit: Deposit
    deposited_amount: Amount


class OfferFundingFailed(Message):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    currency: Currency
    amount: Amount
    reason_code: str
    message: str
    title: str | None = None


class OfferWithdrawn(Message):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    refunded_amount: Amount
    currency: Currency


class OfferDeclined(Message):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    reason: str | None = None
    refunded_amount: Amount
    currency: Currency


class ContractStarted(Message):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    currency: Currency


class ContractEnded(Message):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    ended_by: str
    refunded_amount: Amount = 0
    currency: Currency


class ContractCancelled(Message):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    reason: str
    refunded_amount: Amount
    released_amount: Amount = 0
    currency: Currency


# -- milestones -----------------------------------------------------------------------------


class MilestoneAdded(Message):
    contract_id: Id
    milestone_id: Id
    title: str
    amount: Amount
    currency: Currency
    due_date: date | None = None


class MilestoneEdited(Message):
    contract_id: Id
    milestone_id: Id
    title: str
    amount: Amount
    currency: Currency
    due_date: date | None = None


class MilestoneRemoved(Message):
    contract_id: Id
    milestone_id: Id


class MilestoneFunded(Message):
    contract_id: Id
    milestone_id: Id
    amount: Amount
    currency: Currency
    charge_id: Id


class MilestoneFundingFailed(Message):
    contract_id: Id
    milestone_id: Id
    amount: Amount
    currency: Currency
    reason_code: str
    message: str


class WorkSubmitted(Message):
    contract_id: Id
    milestone_id: Id
    client_id: Id
    freelancer_id: Id
    message: str
    review_due_at: UtcDateTime


class ChangesRequested(Message):
    contract_id: Id
    milestone_id: Id
    client_id: Id
    freelancer_id: Id
    message: str


class ReviewPeriodEndingSoon(Message):
    contract_id: Id
    milestone_id: Id
    client_id: Id
    review_due_at: UtcDateTime


class MilestoneApproved(Message):
    contract_id: Id
    milestone_id: Id
    amount: Amount
    currency: Currency


class MilestoneAutoReleased(Message):
    contract_id: Id
    milestone_id: Id
    amount: Amount
    currency: Currency
    review_due_at: UtcDateTime


class MilestonePaid(Message):
    contract_id: Id
    milestone_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    automatic: bool = False


class MilestoneRefunded(Message):
    contract_id: Id
    milestone_id: Id
    client_id: Id
    amount: Amount
    currency: Currency


# -- bonuses, refunds, disputes -------------------------------------------------------------


class BonusGiven(Message):
    contract_id: Id
    bonus_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    note: str
    business_date: date
    given_at: UtcDateTime


class RefundRequested(Message):
    contract_id: Id
    milestone_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    respond_by: UtcDateTime


class RefundAccepted(Message):
    contract_id: Id
    milestone_id: Id
    amount: Amount
    currency: Currency


class DisputeOpened(Message):
    contract_id: Id
    milestone_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency


class DisputeResolved(Message):
    contract_id: Id
    milestone_id: Id
    release_amount: NonNegativeAmount
    refund_amount: NonNegativeAmount
    currency: Currency
    resolved_by: str = Field(description="admin:<name>")


