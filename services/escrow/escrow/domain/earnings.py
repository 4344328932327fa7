"""A freelancer's earning and its security period: credited to pending, available `pending_for` later. Pure."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from platform_runtime.keys import compose

EARNINGS_AVAILABLE_TIMER = "earnings_available"


@dataclass(frozen=True)
class Earning:
    earning_id: str  # the ledger transaction that credited it: the release id or the bonus id
    kind: str  # release | bonus
    contract_id: str
    milestone_id: str | None
    bonus_id: str | None
    freelancer_id: str
    currency: str
    amount: int
    released_at: datetime
    available_at: datetime


def released(earning_id: str, kind: str, contract_id: str, freelancer_id: str, amount: int, currency: str,
             now: datetime, pending_for: timedelta, *, milestone_id: str | None = None,
             bonus_id: str | None = None) -> Earning:
    return Earning(earning_id, kind, contract_id, milestone_id, bonus_id, freelancer_id, currency, amount, now,
                   now + pending_for)


def timer_id(earnings: list[Earning]) -> str:
    """One timer for the earnings credited together (a release, or one PostBonuses): named after the first,
    whose ledger transaction exists once, so the timer is set once however often its command is re-sent."""
    return compose(EARNINGS_AVAILABLE_TIMER, earnings[0].kind, earnings[0].earning_id)


def available_transaction(earning: Earning) -> str:
    """The id of the ledger transaction that makes an earning available (kind `available`)."""
    return compose(earning.kind, earning.earning_id)
