"""A bonus: given by the client on an active contract, or one ended less than a year ago. Pure.

Contracts only records it; billing's daily batch charges it and reports back (paid or failed).
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from platform_runtime.errors import Rejected

from .contracts import ACTIVE, ENDED, Contract
from .limits import Limits

PENDING, PAID, FAILED = "pending", "paid", "failed"


@dataclass
class Bonus:
    bonus_id: str
    contract_id: str
    client_id: str
    freelancer_id: str
    amount: int
    currency: str
    note: str
    business_date: date  # the UTC day it was accepted: its batch is that day's (or a later one)
    given_at: datetime
    status: str = PENDING
    reason_code: str | None = None
    settled_at: datetime | None = None


def give(contract: Contract, actor: str, bonus_id: str, amount: int, note: str, now: datetime, limits: Limits,
         window_after_end: timedelta, given_today: int = 0) -> Bonus:
    """`given_today`: what the client gave in bonuses (this currency) earlier on the same UTC day."""
    contract.ensure_client(actor)
    ended_lately = (contract.status == ENDED and contract.ended_at is not None
                    and now - contract.ended_at < window_after_end)
    if contract.status != ACTIVE and not ended_lately:
        raise Rejected("invalid_state", f"contract {contract.contract_id} is {contract.status}; a bonus goes on an "
                                        f"active contract or one ended less than {window_after_end.days} days ago")
    limits.check_bonus(amount, given_today)
    return Bonus(bonus_id, contract.contract_id, contract.client_id, contract.freelancer_id, amount, contract.currency,
                 note, now.astimezone(timezone.utc).date(), now)
