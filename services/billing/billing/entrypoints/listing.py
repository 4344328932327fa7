"""What the listing endpoints share: `older_than` as a duration, `limit`, and opaque `next` tokens."""

from datetime import datetime, timedelta

from fastapi import HTTPException
from pydantic import TypeAdapter, ValidationError

from platform_runtime.settings import Duration

_DURATION = TypeAdapter(Duration)


def created_before(now: datetime, older_than: str | None) -> datetime | None:
    """`older_than=PT5M` (ISO 8601, or seconds) -> the moment before which the listed work was created."""
    if older_than is None:
        return None
    try:
        age: timedelta = _DURATION.validate_python(older_than)
    except ValidationError:
        raise HTTPException(400, f"older_than must be an ISO 8601 duration such as PT5M, not {older_than!r}") from None
    return now - age


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
