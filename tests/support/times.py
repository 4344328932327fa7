"""Times as events and read APIs give them (ISO 8601, `Z` for UTC), as datetimes to compare."""

from datetime import datetime


def at(value: str | datetime) -> datetime:
    """An event's `time` (already a datetime) or a timestamp field such as `review_due_at` (text)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
