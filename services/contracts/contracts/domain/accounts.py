"""Accounts: clients and freelancers, and whether they may start new activity. Pure."""

from dataclasses import dataclass
from datetime import datetime

from platform_runtime.errors import Rejected

ACTIVE, INACTIVE, SUSPENDED = "active", "inactive", "suspended"


@dataclass
class Account:
    account_id: str
    role: str
    name: str
    email: str
    status: str = ACTIVE
    status_reason: str | None = None
    appealable: bool | None = None
    reactivation_requested: bool = False
    last_activity_at: datetime | None = None

    def ensure_role(self, role: str) -> None:
        if self.role != role:
            raise Rejected("forbidden", f"{self.account_id} is a {self.role}, not a {role}")

    def ensure_may_start_activity(self) -> None:
        """Suspended or inactive accounts may not start anything new (money already due still moves)."""
        if self.status != ACTIVE:
            raise Rejected("account_not_active", f"account {self.account_id} is {self.status}")

    def suspend(self, reason: str, appealable: bool) -> None:
        """By an administrator or automatically; a pending reactivation request is dropped with it."""
        self.status, self.status_reason, self.appealable = SUSPENDED, reason, appealable
        self.reactivation_requested = False

    def touch(self, now: datetime) -> None:
        self.last_activity_at = now
