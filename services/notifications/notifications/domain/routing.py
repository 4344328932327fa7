"""Who must be told what: each event type -> the notification kinds it causes and their recipients.

Pure: works on the event's data (a dict) and the contract's parties from the projection, for the
events that name only the contract.
"""

from dataclasses import dataclass, field
from typing import Any, Literal

Party = Literal["client", "freelancer", "account", "administrators"]
CHANNELS = ("email", "in_app")


@dataclass(frozen=True)
class Parties:
    """A contract's people, projected from OfferSent / OfferFundingFailed (never read from contracts' DB)."""

    contract_id: str
    client_id: str
    freelancer_id: str
    currency: str
    title: str | None = None


@dataclass(frozen=True)
class Notice:
    """One notification kind for one person; rendered and sent on every channel."""

    kind: str
    account_id: str
    party: Party
    facts: dict[str, Any] = field(default_factory=dict)


CLIENT: Party = "client"
FREELANCER: Party = "freelancer"
ACCOUNT: Party = "account"
ADMINISTRATORS: Party = "administrators"
BOTH = (FREELANCER, CLIENT)
# The administrators are one recipient: an account of this id, whose address is the ADMIN_EMAIL setting.
ADMINISTRATORS_ID = "administrators"

# event type -> (kind, who is told); the templates are named after the kind.
RULES: dict[str, tuple[str, tuple[Party, ...]]] = {
    "OfferSent": ("offer_received", (FREELANCER,)),
    "OfferFundingFailed": ("offer_funding_failed", (CLIENT,)),
    "MilestoneFundingFailed": ("milestone_funding_failed", (CLIENT,)),
    "ContractStarted": ("offer_accepted", (CLIENT,)),
    "OfferDeclined": ("offer_declined", (CLIENT,)),
    "OfferWithdrawn": ("offer_withdrawn", (FREELANCER,)),
    "WorkSubmitted": ("work_submitted", (CLIENT, FREELANCER)),
    "ChangesRequested": ("changes_requested", (FREELANCER,)),
    "ReviewPeriodEndingSoon": ("review_reminder", (CLIENT,)),
    "MilestonePaid": ("payment_released", BOTH),
    "BonusPaid": ("bonus_received", (FREELANCER,)),
    "BonusFailed": ("bonus_charge_failed", (CLIENT,)),
    "PastDueBalanceChanged": ("past_due_balance", (CLIENT,)),
    "RefundRequested": ("refund_requested", (FREELANCER,)),
    "MilestoneRefunded": ("refund_completed", (CLIENT,)),
    "DisputeOpened": ("dispute_opened", (*BOTH, ADMINISTRATORS)),
    "DisputeOverdue": ("dispute_overdue", (*BOTH, ADMINISTRATORS)),
    "DisputeResolved": ("dispute_resolved", BOTH),
    "ContractEnded": ("contract_ended", BOTH),
    "ContractCancelled": ("contract_cancelled", BOTH),
    "AccountSuspended": ("account_suspended", (ACCOUNT,)),
    "ReactivationRequested": ("reactivation_requested", (ACCOUNT, ADMINISTRATORS)),
    "AccountReactivated": ("account_reactivated", (ACCOUNT,)),
    "ReactivationRefused": ("reactivation_refused", (ACCOUNT,)),
    "AccountMarkedInactive": ("account_marked_inactive", (ACCOUNT,)),
}
KINDS: tuple[str, ...] = tuple(dict.fromkeys(kind for kind, _ in RULES.values()))


class RecipientUnknown(Exception):
    """The event names only its contract, and the projection has not seen that contract."""


def recipient(party: Party, data: dict[str, Any], parties: Parties | None) -> str:
    if party == ADMINISTRATORS:
        return ADMINISTRATORS_ID
    key = "account_id" if party == ACCOUNT else f"{party}_id"
    if data.get(key):
        return data[key]
    if parties is not None and party != ACCOUNT:
        return getattr(parties, key)
    raise RecipientUnknown(f"{key} of {data.get('contract_id') or data.get('account_id')}")


def notices_for(event_type: str, data: dict[str, Any], parties: Parties | None = None) -> list[Notice]:
    """The notifications an event causes; empty for events nobody is told about."""
    rule = RULES.get(event_type)
    if rule is None:
        return []
    kind, who = rule
    return [Notice(kind, recipient(party, data, parties), party, facts(data, parties)) for party in who]


def facts(data: dict[str, Any], parties: Parties | None) -> dict[str, Any]:
    """What the templates may use: the event's fields, plus the contract's title and currency."""
    known = {"contract_title": parties.title, "currency": parties.currency} if parties else {}
    return {**known, **data}
