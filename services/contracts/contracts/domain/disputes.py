"""A dispute: a freelancer refused a refund request, so the milestone's money waits for an administrator.

It is flagged overdue once, when still open `DISPUTE_RESOLVE_WITHIN` after it was opened; no money moves
by itself. Pure.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from .contracts import Contract, Milestone

OPEN, RESOLVED = "open", "resolved"


@dataclass
class Dispute:
    milestone_id: str
    contract_id: str
    client_id: str
    freelancer_id: str
    amount: int
    currency: str
    opened_at: datetime
    resolve_by: datetime
    overdue_at: datetime | None = None
    resolved_at: datetime | None = None

    @classmethod
    def open(cls, contract: Contract, milestone: Milestone, now: datetime, resolve_within: timedelta) -> "Dispute":
        return cls(milestone.milestone_id, contract.contract_id, contract.client_id, contract.freelancer_id,
                   milestone.amount, contract.currency, now, now + resolve_within)

    @property
    def status(self) -> str:
        return RESOLVED if self.resolved_at else OPEN

    def overdue(self, now: datetime) -> bool:
        return self.resolved_at is None and now >= self.resolve_by

    def flag_overdue(self, now: datetime) -> bool:
        """True the one time it becomes overdue; False when resolved meanwhile or already flagged."""
        if not self.overdue(now) or self.overdue_at is not None:
            return False
        self.overdue_at = now
        return True

    def resolve(self, now: datetime) -> None:
        self.resolved_at = now
