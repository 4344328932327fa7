"""What is coming up for a person: every dated thing ahead across their contracts, soonest first. Pure.

    auto_release             a submitted milestone is released at the end of its review (client reminded before)
    refund_request_deadline  the freelancer answers a refund request by then, or it is accepted on their behalf
    earning_available        a released payment or bonus leaves the security period (EARNINGS_PENDING_FOR)
    bonus_charge             the client's pending bonuses are charged by the daily batch (one charge per currency)
    bonus_payment            a pending bonus reaches the freelancer with that batch
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

AUTO_RELEASE, REFUND_DEADLINE, EARNING_AVAILABLE = "auto_release", "refund_request_deadline", "earning_available"
BONUS_CHARGE, BONUS_PAYMENT = "bonus_charge", "bonus_payment"
_LATEST = datetime.max.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Upcoming:
    kind: str
    at: datetime | None
    amount: int
    currency: str
    contract_id: str | None = None
    milestone_id: str | None = None
    bonus_id: str | None = None
    reminder_at: datetime | None = None
    bonuses: int | None = None

    @property
    def sort_key(self) -> tuple:
        return self.at or _LATEST, self.kind, self.contract_id or "", self.milestone_id or self.bonus_id or ""


@dataclass(frozen=True)
class PendingBonus:
    bonus_id: str
    contract_id: str
    client_id: str
    freelancer_id: str
    amount: int
    currency: str
    business_date: date


def batch_time(business_date: date, batch_at: time | None) -> datetime | None:
    """The batch of business day D runs on D+1 at BONUS_BATCH_AT (UTC); None when only operators run it."""
    if batch_at is None:
        return None
    return datetime.combine(business_date + timedelta(days=1), batch_at, tzinfo=timezone.utc)


def auto_release(contract_id: str, milestone_id: str, amount: int, currency: str, review_due_at: datetime,
                 reminder_before: timedelta) -> Upcoming:
    return Upcoming(AUTO_RELEASE, review_due_at, amount, currency, contract_id, milestone_id,
                    reminder_at=review_due_at - reminder_before)


def refund_deadline(contract_id: str, milestone_id: str, amount: int, currency: str, respond_by: datetime) -> Upcoming:
    return Upcoming(REFUND_DEADLINE, respond_by, amount, currency, contract_id, milestone_id)


def earning_available(contract_id: str, item_kind: str, item_id: str, amount: int, currency: str,
                      available_at: datetime) -> Upcoming:
    ids = {"bonus_id": item_id} if item_kind == "bonus" else {"milestone_id": item_id}
    return Upcoming(EARNING_AVAILABLE, available_at, amount, currency, contract_id, **ids)


def bonus_items(account_id: str, pending: list[PendingBonus], batch_at: time | None) -> list[Upcoming]:
    """The client: one charge per batch and currency; the freelancer: each bonus coming to them."""
    items, charges = [], defaultdict(list)
    for b in pending:
        when = batch_time(b.business_date, batch_at)
        if b.client_id == account_id:
            charges[(when, b.currency)].append(b)
        if b.freelancer_id == account_id:
            items.append(Upcoming(BONUS_PAYMENT, when, b.amount, b.currency, b.contract_id, bonus_id=b.bonus_id))
    for (when, currency), bonuses in charges.items():
        items.append(Upcoming(BONUS_CHARGE, when, sum(b.amount for b in bonuses), currency, bonuses=len(bonuses)))
    return items


def soonest_first(items: list[Upcoming], limit: int) -> list[Upcoming]:
    return sorted(items, key=lambda u: u.sort_key)[:limit]
