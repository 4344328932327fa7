"""Delivery rules: stable ids (so a redelivered event or a resent mail is recognisable) and the retry policy."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

_NAMESPACE = uuid.UUID("6f1b3f0e-2b7c-4c47-9a53-4d1e2a9b7c10")
MESSAGE_ID_DOMAIN = "notifications.escrow-platform"

PENDING, SENT, DELIVERED, FAILED = "pending", "sent", "delivered", "failed"


def notification_id(event_id: str, account_id: str, channel: str) -> str:
    """The same event, person and channel always give the same id: one notification, however often it arrives."""
    return str(uuid.uuid5(_NAMESPACE, f"{event_id}\x1f{account_id}\x1f{channel}"))


def message_id(notification_id: str) -> str:
    """The email's Message-ID, derived from the notification: a resend after a crash carries the same one."""
    return f"<{notification_id}@{MESSAGE_ID_DOMAIN}>"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff: timedelta
    max_backoff: timedelta

    def next_attempt_at(self, attempts: int, now: datetime, permanent: bool = False) -> datetime | None:
        """When to try again after `attempts` failed tries; None: give up (spent, or refused for good)."""
        if permanent or attempts >= self.max_attempts:
            return None
        return now + min(self.backoff * 2 ** (attempts - 1), self.max_backoff)
