"""CloudEvents 1.0 structured JSON envelope, the outer shape of every message on every topic."""

import json
import os
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import to_json

from .types import NO_CONTROL, Message, UtcDateTime

MAX_EXTENSIONS, MAX_EXTENSION_LENGTH = 16, 512
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")  # CloudEvents attribute names
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

CONTENT_TYPE = "application/cloudevents+json"


def dataschema_of(type_name: str, version: int = 1) -> str:
    return f"urn:escrow:schema:{type_name}:{version}"


def parse_dataschema(value: str | None) -> int:
    """The schema version named by `dataschema`; 1 when absent."""
    if not value:
        return 1
    try:
        return int(value.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        raise ValueError(f"unreadable dataschema {value!r}") from None


class Envelope(BaseModel):
    """Every attribute has a maximum length no larger than the column that stores it (processed_messages,
    outbox, timers: 200) and no control characters, so a malformed envelope is refused when it is parsed,
    before any database work: it costs the messages behind it no more than a good one."""

    # Extension attributes (tracing and the like) are allowed by CloudEvents and kept, within bounds.
    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=128, pattern=NO_CONTROL)
    source: str = Field(min_length=1, max_length=200, pattern=NO_CONTROL)
    type: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z][A-Za-z0-9_.]*$")
    time: UtcDateTime
    subject: str = Field(min_length=1, max_length=128, pattern=NO_CONTROL)
    actor: str = Field(min_length=1, max_length=128, pattern=NO_CONTROL)
    correlationid: str | None = Field(default=None, min_length=1, max_length=128, pattern=NO_CONTROL)
    causationid: str | None = Field(default=None, min_length=1, max_length=128, pattern=NO_CONTROL)
    datacontenttype: str = Field(default="application/json", max_length=100, pattern=NO_CONTROL)
    dataschema: str | None = Field(default=None, max_length=200, pattern=NO_CONTROL)
    # CloudEvents distributed-tracing extension (W3C trace context): optional, passed on by the platform
    # to every message a message causes; a malformed value is ignored, never a reason to reject.
    traceparent: str | None = Field(default=None, max_length=128)
    tracestate: str | None = Field(default=None, max_length=512)
    data: dict[str, Any]

    @model_validator(mode="after")
    def _bounded_extensions(self) -> "Envelope":
        extensions = self.model_extra or {}
        if len(extensions) > MAX_EXTENSIONS:
            raise ValueError(f"at most {MAX_EXTENSIONS} extension attributes")
        for name, value in extensions.items():
            if not _EXTENSION_NAME.match(name):
                raise ValueError(f"extension attribute name {name[:40]!r} is not [a-z0-9]{{1,20}}")
            if not isinstance(value, (str, int, bool)) or (isinstance(value, str) and (
                    len(value) > MAX_EXTENSION_LENGTH or _CONTROL.search(value))):
                raise ValueError(f"extension attribute {name} must be a short string, integer or boolean")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def new_id() -> str:
    """A random (version 4) UUID as text, what `str(uuid.uuid4())` gives, at less than half its CPU (1.2 against 2.5
    µs on the Xeon of issue 10's thirty-first step): a message's id when its caller names none. The bonus batch writes
    four messages a bonus, and uuid4 (a UUID object made, its bits set as an integer, then formatted) was a quarter
    of what encoding one cost."""
    digits = os.urandom(16).hex()
    return (f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{_RFC_4122_VARIANT[digits[16]]}{digits[17:20]}-"
            f"{digits[20:]}")


# The variant's two top bits are 10: the first hex digit of the fourth group is 8, 9, a or b.
_RFC_4122_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _head(
    data: Message,
    *,
    subject: str,
    actor: str,
    source: str,
    id: str | None = None,
    correlationid: str | None = None,
    causationid: str | None = None,
    time: datetime | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> dict[str, Any]:
    """The envelope's attributes but `data`, in the model's field order, those not given left out."""
    message_id = id or new_id()
    type_name = type(data).__name__
    attributes = {"specversion": "1.0", "id": message_id, "source": source, "type": type_name,
                  "time": time or datetime.now(timezone.utc), "subject": subject, "actor": actor,
                  "correlationid": correlationid or message_id}
    if causationid is not None:
        attributes["causationid"] = causationid
    attributes["datacontenttype"] = "application/json"
    attributes["dataschema"] = dataschema_of(type_name, data.VERSION)
    if traceparent is not None:
        attributes["traceparent"] = traceparent
    if tracestate is not None:
        attributes["tracestate"] = tracestate
    return attributes


def envelope_attributes(data: Message, **attributes: Any) -> dict[str, Any]:
    """A new message's envelope attributes, unchecked, in the model's field order, those not given left out: the type
    is the payload class's name, a new id its own correlation id, `time` now unless given (keywords: `subject`,
    `actor`, `source`; optional `id`, `correlationid`, `causationid`, `time`, `traceparent`, `tracestate`)."""
    envelope = _head(data, **attributes)
    envelope["data"] = data.model_dump(mode="json", exclude_none=True)
    return envelope


def new_envelope(data: Message, **attributes: Any) -> Envelope:
    """Wrap a command or event payload (`envelope_attributes`), validated by the model: what a caller sends."""
    return Envelope(**envelope_attributes(data, **attributes))


_CHECKED = (("id", 128), ("source", 200), ("subject", 128), ("actor", 128), ("correlationid", 128),
            ("causationid", 128))


def encode_new(data: Message, **attributes: Any) -> tuple[str, bytes]:
    """`new_envelope(...).to_json()`, byte for byte, and the envelope's id, without building the model.

    For the platform's own messages (UnitOfWork.publish): `data` was validated when its model was made and the
    ids come from the message being handled (validated when it arrived) or from here, so the model's validation
    only repeated work, and it was a third of what publishing a message cost (a bonus batch publishes three per
    bonus). The attributes a caller passes are still held to the envelope's bounds. The payload's model is
    written by its own serializer inside the envelope's JSON, not turned into a dict first and then written."""
    envelope = _head(data, **attributes)
    for name, longest in _CHECKED:
        value = envelope.get(name)
        if value is not None and not (0 < len(value) <= longest and (value.isprintable() or not _CONTROL.search(value))):
            raise ValueError(f"envelope attribute {name} {value[:40]!r} is empty, too long or has a control character")
    time = envelope["time"]
    if time.tzinfo is None:
        raise ValueError("timestamps must carry a UTC offset (RFC 3339)")
    envelope["time"] = time.astimezone(timezone.utc)  # as the model's UtcDateTime would
    envelope["data"] = data
    return envelope["id"], to_json(envelope, exclude_none=True)


BINARY_PREFIX = "ce_"


def from_kafka(value: bytes | None, headers: Iterable[tuple[str, bytes]] | None = None) -> Envelope:
    """The envelope of a Kafka record in either CloudEvents content mode (Kafka protocol binding 1.0).

    Structured: the value is the whole JSON envelope. Binary: the attributes are `ce_<name>` headers
    (`ce_specversion`, `ce_id`, `ce_type`, `ce_source`, `ce_time`, `ce_subject`, `ce_actor`, ...; the
    `content-type` header is `datacontenttype`) and the value is `data` alone. Raises pydantic's
    ValidationError for anything that is not a valid envelope, in both modes.
    """
    attributes: dict[str, Any] = {}
    content_type = None
    for name, raw in headers or ():
        text = raw.decode("utf-8", errors="replace") if raw is not None else ""
        if name.startswith(BINARY_PREFIX):
            attributes[name[len(BINARY_PREFIX):]] = text
        elif name.lower() == "content-type":
            content_type = text
    if "specversion" not in attributes:
        return Envelope.model_validate_json(value or b"")
    if content_type:
        attributes["datacontenttype"] = content_type
    try:
        attributes["data"] = json.loads(value or b"")
    except ValueError:  # reported by the model, like any other invalid data
        attributes["data"] = (value or b"").decode("utf-8", errors="replace")
    return Envelope.model_validate(attributes)
