"""Commands as an operator types them: a type name and JSON data, checked against the schemas before sending."""

import json
import sys
from pathlib import Path

from platform_schemas import Envelope, new_envelope, registry
from platform_schemas.actors import COMMAND_ROUTES, command_topic
from pydantic import ValidationError

# Which field of a command names its subject (the Kafka key), in the order they are looked for.
_SUBJECT_FIELDS = ("contract_id", "account_id")


class BadInput(Exception):
    """What is wrong with what the operator typed, in words they can act on."""


def topic_of(type_name: str) -> str:
    """A command's one topic: an operator's on its service's admin topic, any other on the integrator's (the
    saga topics are written only by the platform itself)."""
    if type_name in COMMAND_ROUTES:
        return command_topic(type_name)
    raise BadInput(f"{type_name!r} is not a command of the platform. Commands: {', '.join(sorted(COMMAND_ROUTES))}")


def read_data(text: str) -> dict:
    """JSON data given inline, as @file, or as - (standard input)."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as error:
            raise BadInput(f"cannot read {text[1:]}: {error.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInput(f"data is not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    if not isinstance(data, dict):
        raise BadInput("data must be a JSON object")
    return data


def subject_of(type_name: str, data: dict) -> str:
    if type_name == "RunBonusBatch" and "business_date" in data:
        return f"bonus-batch-{data['business_date']}"
    for name in _SUBJECT_FIELDS:
        if isinstance(data.get(name), str):
            return data[name]
    raise BadInput("cannot tell the subject (Kafka key) from the data: give --subject")


def build(type_name: str, data: dict, *, actor: str, source: str, subject: str | None = None,
          id: str | None = None, traceparent: str | None = None) -> tuple[str, Envelope]:
    """The topic and envelope of a valid command; BadInput naming every problem otherwise."""
    topic = topic_of(type_name)
    model = registry.model_for(type_name)
    try:
        payload = model.model_validate(data)
    except ValidationError as error:
        problems = "\n".join(f"  {'.'.join(map(str, e['loc'])) or '(data)'}: {e['msg']}" for e in error.errors())
        raise BadInput(f"{type_name} data does not match its schema ({registry.model_for(type_name).__name__} "
                       f"v{model.VERSION}):\n{problems}") from None
    try:
        envelope = new_envelope(payload, subject=subject or subject_of(type_name, data), actor=actor,
                                source=source, id=id, traceparent=traceparent)
    except ValidationError as error:
        problems = "\n".join(f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise BadInput(f"the envelope is not valid:\n{problems}") from None
    return topic, envelope
