"""Value types shared by every message: ids, money, currencies, timestamps."""

from datetime import datetime, timezone
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]

# No control characters (C0, DEL, C1): a NUL cannot be stored by PostgreSQL and the others have no place in
# a name or a title. Free text (messages, notes, reasons) may hold tabs and line breaks.
NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"
NO_CONTROL_BUT_LINE_BREAKS = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"


def Line(max_length: int, min_length: int = 1):  # noqa: N802 - a type, named like one
    """One line of text of at most `max_length` characters (its column's length), no control characters."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length, pattern=NO_CONTROL)]


def Text(max_length: int, min_length: int = 1):  # noqa: N802
    """Free text of at most `max_length` characters; tabs and line breaks allowed, other controls not."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length, pattern=NO_CONTROL_BUT_LINE_BREAKS)]
# Strict: pydantic's lax mode would turn "1500", 10.0 and True into 1500/10/1. Money is never coerced.
Amount = Annotated[StrictInt, Field(description="Minor units (cents) of `currency`")]
NonNegativeAmount = Annotated[StrictInt, Field(ge=0, description="Minor units (cents) of `currency`, 0 or more")]
SignedAmount = Annotated[
    StrictInt, Field(description="Minor units (cents) of `currency`; negative when money leaves the holder")
]
Currency = Literal["USD", "EUR", "GBP"]
Role = Literal["client", "freelancer"]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a UTC offset (RFC 3339)")
    return value.astimezone(timezone.utc)


UtcDateTime = Annotated[datetime, AfterValidator(_utc)]


class Message(BaseModel):
    """Base of every command and event payload (the CloudEvents `data`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Bumped only on an incompatible change; adding an optional field keeps the version.
    VERSION: ClassVar[int] = 1


class Event(Message):
    """Base of every event payload. Events tolerate fields they do not know (schema evolution rule):
    a consumer validating with an older schema keeps working when a producer adds an optional field.
    Commands stay closed (`extra="forbid"`): their only consumer is the platform, upgraded before any
    producer sends the new field, and an unknown field in a command is more likely a caller's mistake."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Posting(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # a value inside events
    posting_id: Id
    debit_account: str = Field(description="Account the money leaves")
    credit_account: str = Field(description="Account the money enters")
    amount: Annotated[StrictInt, Field(gt=0)]
    currency: Currency
