"""Contracts' commands from outside: other back ends publish on `contracts.commands`; operators' account and
dispute commands go on `contracts.admin-commands` (platform_schemas.actors routes each)."""

from datetime import date
from typing import Literal

from pydantic import Field

from ..types import Amount, Currency, Id, Line, Message, NonNegativeAmount, Role, Text

Deposit = Literal["first_milestone", "all_milestones"]
MAX_MILESTONES_PER_CONTRACT = 50  # an offer's list, and what AddMilestone may grow a contract to


class RegisterAccount(Message):
    account_id: Id
    role: Role
    name: Line(200)
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+$")


class SuspendAccount(Message):
    account_id: Id
    reason: Text(1000)
    appealable: bool


class RequestReactivation(Message):
    account_id: Id


class ReactivateAccount(Message):
    account_id: Id


class MilestoneSpec(Message):
    milestone_id: Id
    title: Line(200)
    amount: Amount
    due_date: date | None = None


class SendOffer(Message):
    contract_id: Id
    client_id: Id
    freelancer_id: Id
    title: Line(200)
    currency: Currency
    milestones: list[MilestoneSpec] = Field(min_length=1, max_length=MAX_MILESTONES_PER_CONTRACT)
    deposit: Deposit = "first_milestone"


class WithdrawOffer(Message):
    contract_id: Id


class AcceptOffer(Message):
    contract_id: Id


class DeclineOffer(Message):
    contract_id: Id
    reason: Text(1000, min_length=0) | None = None


class AddMilestone(Message):
    contract_id: Id
    milestone_id: Id
    title: Line(200)
    amount: Amount
    due_date: date | None = None
    fund_now: bool = False


class EditMilestone(Message):
    """Fields left out stay as they are; `due_date: null` clears the due date."""

    contract_id: Id
    milestone_id: Id
    title: Line(200) | None = None
    amount: Amount | None = None
    due_date: date | None = None


class RemoveMilestone(Message):
    contract_id: Id
    milestone_id: Id


class ActivateMilestone(Message):
    contract_id: Id
    milestone_id: Id


class SubmitWork(Message):
    contract_id: Id
    milestone_id: Id
    message: Text(5000)


class ApproveMilestone(Message):
    contract_id: Id
    milestone_id: Id
    keep_open: bool = True
    next_milestone: MilestoneSpec | None = None


class RequestChanges(Message):
    contract_id: Id
    milestone_id: Id
    message: Text(5000)


class GiveBonus(Message):
    contract_id: Id
    bonus_id: Id
    amount: Amount
    note: Text(1000)


class EndContract(Message):
    contract_id: Id


class CancelContract(Message):
    contract_id: Id
    reason: Text(1000)


class RespondToRefundRequest(Message):
    contract_id: Id
    milestone_id: Id
    accept: bool


class ResolveDispute(Message):
    contract_id: Id
    milestone_id: Id
    release_amount: NonNegativeAmount
    refund_amount: NonNegativeAmount
