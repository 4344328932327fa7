"""Billing's commands from outside: accounts' billing methods on `billing.commands`; operators' RunBonusBatch
and RetryRefund on `billing.admin-commands` (platform_schemas.actors routes each)."""

from datetime import date
from typing import Literal


from ..types import Id, Line, Message

BillingMethodKind = Literal["card", "bank_account", "paypal"]


class AddBillingMethod(Message):
    account_id: Id
    billing_method_id: Id
    kind: BillingMethodKind
    token: Line(200)
    make_primary: bool = False


class SetPrimaryBillingMethod(Message):
    account_id: Id
    billing_method_id: Id


class RemoveBillingMethod(Message):
    account_id: Id
    billing_method_id: Id


class RunBonusBatch(Message):
    business_date: date


class RetryRefund(Message):
    """An operator (`admin:<name>`) asks billing to try a `needs_attention` refund again (same idempotency key).

    Answered by `RefundRetried` (the refund is pending again), then `ChargeRefunded` or, if the gateway still
    refuses, `RefundChargeFailed` once more.
    """

    refund_id: Id
