"""Facts of billing on `billing.events`."""

from datetime import date
from typing import Literal

from pydantic import Field

from ..commands.billing import BillingMethodKind
from ..commands.saga import ChargePurpose, MilestoneAmount
from ..types import Amount, Currency, Event, Id, NonNegativeAmount, SignedAmount, UtcDateTime
from .common import StepFailed

TransactionKind = Literal[
    "fixed_price_charge",
    "bonus_charge",
    "refund",
    "escrow_release",
    "payment",
    "fixed_price_earning",
    "bonus_earning",
]


class BillingMethodAdded(Event):
    account_id: Id
    billing_method_id: Id
    kind: BillingMethodKind
    primary: bool


class PrimaryBillingMethodChanged(Event):
    account_id: Id
    billing_method_id: Id
    previous_billing_method_id: Id | None = None


class BillingMethodRemoved(Event):
    account_id: Id
    billing_method_id: Id


class ClientCharged(Event):
    """The charge step's success reply: the client was charged (`ChargeClient` -> this or ChargeFailed).

    A fund saga's charge (`purpose: fixed_price`, naming its milestones) is also what escrow holds on: escrow holds
    it as the saga's hold step (`<saga_id>:hold`) when it reads this event, without waiting for `HoldEscrow`.
    A bonus batch's charge (`purpose: bonus`) names the batch in `saga_id` and holds nothing.
    """

    charge_id: Id
    saga_id: str
    contract_id: Id
    client_id: Id
    billing_method_id: Id
    amount: Amount
    currency: Currency
    purpose: ChargePurpose
    milestones: list[MilestoneAmount] = []
    gateway_reference: str


class ChargeFailed(Event):
    """The charge step's typed failure reply: the client was not charged (`ChargeClient` -> this or ClientCharged).

    `reason_code`: `card_declined`, `insufficient_funds`, `no_primary_method`, or `gateway_unavailable` (the
    gateway did not answer within billing's bounded time; nothing was charged under the step's key).
    A fund saga's charge names its contract and saga; a bonus batch's charge (`purpose: bonus`, one per
    client and currency) names the batch: `saga_id` is `bonus-batch-YYYY-MM-DD`, `business_date` its day,
    `bonuses` how many of the client's bonuses it was for, and no contract. `consecutive_failures` is the
    client's streak after this charge (a `no_primary_method` or `gateway_unavailable` failure charged
    nothing and does not count).
    """

    charge_id: Id
    saga_id: str
    contract_id: Id | None = None
    client_id: Id
    amount: Amount
    currency: Currency
    purpose: ChargePurpose
    reason_code: str
    message: str
    consecutive_failures: int = 1
    business_date: date | None = None
    bonuses: int | None = None
    step_id: str | None = Field(None, description="The saga step answered (the charge id)")
    retryable: bool = Field(False, description="True when the same charge may succeed later (a gateway outage)")


class ChargeRefunded(Event):
    refund_id: Id
    charge_id: Id
    saga_id: str
    contract_id: Id
    client_id: Id
    billing_method_id: Id
    amount: Amount
    currency: Currency
    milestone_id: Id | None = None


class RefundChargeFailed(StepFailed):
    """The refund step's typed failure reply (`RefundCharge` -> this or ChargeRefunded).

    `not_found` (no successful charge of that id) is final. `refund_declined` (the gateway refused it) and
    `gateway_unavailable` (no answer within billing's bounded time) leave the refund `needs_attention` in
    billing, never dropped: an operator's `RetryRefund` tries it again, and `ChargeRefunded` follows.
    """

    refund_id: Id
    charge_id: Id
    contract_id: Id
    client_id: Id
    amount: Amount
    currency: Currency
    milestone_id: Id | None = None


class RefundRetried(Event):
    """An operator's `RetryRefund` was accepted: the refund is back in the gateway loop's queue."""

    refund_id: Id
    charge_id: Id
    saga_id: str
    contract_id: Id
    client_id: Id
    amount: Amount
    currency: Currency


class TransactionRecorded(Event):
    transaction_id: Id
    account_id: Id
    kind: TransactionKind
    description: str
    amount: SignedAmount
    currency: Currency
    occurred_at: UtcDateTime
    contract_id: Id | None = None
    milestone_id: Id | None = None
    bonus_id: Id | None = None
    available_at: UtcDateTime | None = Field(
        None, description="Earnings only: when the earning becomes available to the freelancer")


class BonusBatchStarted(Event):
    business_date: date
    bonuses: int


class BonusPaid(Event):
    business_date: date
    bonus_id: Id
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    charge_id: Id


class BonusFailed(Event):
    business_date: date
    bonus_id: Id
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    reason_code: str
    message: str


class BonusBatchCompleted(Event):
    business_date: date
    bonuses: int
    paid: int
    failed: int
    totals: dict[Currency, NonNegativeAmount] = Field(
        description="Amount charged for the paid bonuses, per currency"
    )
    failures: list[dict[str, str]] = Field(
        default=[], max_length=100,
        description="The first 100 failed charges; all of them: GET /bonus-batches/{business_date}/failures")
    failed_charges: int | None = Field(default=None, description="How many client charges failed in all")
    past_due: int = Field(0, description="Bonuses whose declined charge is now a past-due balance, retried by "
                                         "the next daily batches (neither paid nor failed yet)")


class PastDueBalanceChanged(Event):
    """A client's past-due balance in a currency changed: a declined bonus charge is owed (retried by the next
    daily batches on the current primary method until `retry_until`), or it was paid, or its last retry
    failed and its bonuses failed (amount back to 0). While it is above 0 the client cannot send offers or
    give bonuses (`past_due_balance`)."""

    client_id: Id
    currency: Currency
    amount: NonNegativeAmount = Field(description="What the client owes now in this currency")
    previous_amount: NonNegativeAmount
    retry_until: date | None = Field(None, description="The last UTC day a batch retries the oldest of it")
    reason_code: str | None = None
    message: str | None = None
    version: int | None = Field(
        None, ge=1, description="One more at each change of this client's balance in this currency (billing "
                                "counts them under the balance's lock): a consumer keeps the highest it has "
                                "seen and ignores an older one arriving late. Absent from billings before it.")
