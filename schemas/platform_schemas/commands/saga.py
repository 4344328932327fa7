"""Internal saga commands: the orchestrator asks a participant to do one step.

`billing.saga-commands` and `escrow.saga-commands` are written only by the platform's sagas. Each
command carries a step id that is also the participant's idempotency key (and, for the gateway,
the idempotency key of the call), derived from the saga and its step, so a retried step is one effect.
"""

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..types import Amount, Currency, Id, Message

ChargePurpose = Literal["fixed_price", "bonus"]


class MilestoneAmount(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # a value inside events too: tolerant like them
    milestone_id: Id
    amount: Amount


class ChargeClient(Message):
    charge_id: Id
    saga_id: str
    contract_id: Id
    client_id: Id
    amount: Amount
    currency: Currency
    purpose: ChargePurpose = "fixed_price"
    milestones: list[MilestoneAmount] = Field(default=[], max_length=50)
    description: str


class RefundCharge(Message):
    """Give money back to the billing method of the original charge."""

    refund_id: Id
    charge_id: Id
    saga_id: str
    contract_id: Id
    client_id: Id
    amount: Amount
    currency: Currency
    milestone_id: Id | None = None
    description: str


class HoldEscrow(Message):
    hold_id: Id
    saga_id: str
    charge_id: Id
    contract_id: Id
    client_id: Id
    currency: Currency
    milestones: list[MilestoneAmount] = Field(min_length=1, max_length=50)


class ReleaseEscrow(Message):
    release_id: Id
    saga_id: str
    contract_id: Id
    milestone_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency


class RefundEscrow(Message):
    refund_id: Id
    saga_id: str
    contract_id: Id
    milestone_id: Id
    client_id: Id
    amount: Amount
    currency: Currency


class PostBonus(Message):
    """Billing's bonus batch, once the client is charged, asks escrow to post the bonus to the freelancer.

    The bonus id is the idempotency key: a bonus is posted once however often this is sent.
    """

    bonus_id: Id
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    charge_id: Id


class BonusToPost(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    bonus_id: Id
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    amount: Amount
    currency: Currency
    charge_id: Id


# Bonuses one PostBonuses carries at most, and so one reply names at most (BonusesPosted, BonusPostingFailed): the
# bonus batch asks for this many at a time (billing's MAX_BONUSES_PER_CREDIT).
MAX_BONUSES_PER_POST = 500


class PostBonuses(Message):
    """The bonus batch's credit step: bonuses whose clients were charged, posted to the ledger in one go.

    Each bonus is its own ledger transaction (id = the bonus id), so a bonus is posted once however
    often it is sent. Escrow answers with one `BonusPosted` per bonus and one `BonusesPosted` reply.
    """

    business_date: date
    bonuses: list[BonusToPost] = Field(min_length=1, max_length=MAX_BONUSES_PER_POST)
