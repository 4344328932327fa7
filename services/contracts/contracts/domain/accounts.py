"""Accounts: clients and freelancers, and whether they may start new activity. Pure."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
    reactivation_requested_at: datetime | None = None
    # What the client owes per currency for declined bonus charges billing still retries (billing's events).
    past_due: dict[str, int] = field(default_factory=dict)
    # currency -> billing's version of that balance applied last (PastDueBalanceChanged.version)
    past_due_versions: dict[str, int] = field(default_factory=dict)

    def ensure_role(self, role: str) -> None:
        if self.role != role:
            raise Rejected("forbidden", f"{self.account_id} is a {self.role}, not a {role}")

    def ensure_may_start_activity(self) -> None:
        """Suspended or inactive accounts may not start anything new (money already due still moves)."""
        if self.status != ACTIVE:
            raise Rejected("account_not_active", f"account {self.account_id} is {self.status}")

    def ensure_nothing_past_due(self) -> None:
        """A client who owes a declined bonus charge may not send offers or give bonuses until it is paid."""
        owed = {currency: amount for currency, amount in sorted(self.past_due.items()) if amount > 0}
        if owed:
            what = ", ".join(f"{amount} {currency}" for currency, amount in owed.items())
            raise Rejected("past_due_balance", f"{self.account_id} has a past-due balance ({what}) of declined "
                                               "bonus charges; it is retried daily on the primary billing method")

    def owe(self, currency: str, amount: int, version: int | None = None) -> bool:
        """Billing's word on what is past due in a currency (0: nothing), unless a newer word (a higher
        version) was taken already: False then, and nothing changes. A word without a version (from a
        billing before versions) is taken as is."""
        if version is not None and version <= self.past_due_versions.get(currency, 0):
            return False
        self.past_due = {**{c: a for c, a in self.past_due.items() if c != currency},
                         **({currency: amount} if amount > 0 else {})}
        if version is not None:
            self.past_due_versions = {**self.past_due_versions, currency: version}
        return True

    def suspend(self, reason: str, appealable: bool) -> None:
        """By an administrator or automatically; a pending reactivation request is dropped with it."""
        self.status, self.status_reason, self.appealable = SUSPENDED, reason, appealable
        self.reactivation_requested, self.reactivation_requested_at = False, None

    def suspend_for_failed_charges(self, consecutive_failures: int, threshold: int) -> str | None:
        """The suspension policy: `threshold` failed charges in a row suspend the client (appealable);
        returns the reason when this failure is the one that does, None otherwise."""
        if consecutive_failures < threshold or self.status == SUSPENDED:
            return None
        reason = f"{consecutive_failures} consecutive failed charges"
        self.suspend(reason, appealable=True)
        return reason

    def reactivate(self, now: datetime) -> None:
        """Active again (an administrator's decision, or an inactive account's own request): the
        suspension's reason and any pending request go, and it counts as activity."""
        self.status, self.status_reason, self.appealable = ACTIVE, None, None
        self.reactivation_requested, self.reactivation_requested_at = False, None
        self.touch(now)

    def ask_for_reactivation(self, now: datetime) -> None:
        """An appealable suspension: the request waits in the administrators' queue."""
        self.reactivation_requested, self.reactivation_requested_at = True, now

    def touch(self, now: datetime) -> None:
        self.last_activity_at = now


def activity_resolution(inactive_after: timedelta) -> timedelta:
    """How stale a recorded activity may be before it is written again.

    Every contract action and money movement counts as activity for both parties; writing the account
    row on each would make a busy client's row the hottest in the database. Recording at most once per
    thousandth of the inactivity period (capped at an hour) keeps the sweep's answer right to within that.
    """
    return min(timedelta(hours=1), inactive_after / 1000)


def activity_is_news(last_activity_at: datetime | None, now: datetime, resolution: timedelta) -> bool:
    return last_activity_at is None or last_activity_at < now - resolution
