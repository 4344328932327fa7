"""CloudEvents Kafka protocol binding: a record in structured or binary content mode gives the same envelope."""

import json

import pytest
from platform_schemas import from_kafka, new_envelope
from platform_schemas.commands.contracts import AcceptOffer
from pydantic import ValidationError

pytestmark = pytest.mark.unit

ENVELOPE = new_envelope(AcceptOffer(contract_id="c-1"), subject="c-1", actor="fl-3", source="web",
                        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")


def binary(envelope=ENVELOPE, drop: str | None = None) -> tuple[bytes, list[tuple[str, bytes]]]:
    attributes = envelope.model_dump(mode="json", exclude_none=True)
    headers = [(f"ce_{k}", str(v).encode()) for k, v in attributes.items()
               if k not in ("data", "datacontenttype", drop)]
    return json.dumps(attributes["data"]).encode(), headers + [("content-type", b"application/json")]


def test_structured_and_binary_records_give_the_same_envelope():
    assert from_kafka(ENVELOPE.to_json(), [("content-type", b"application/cloudevents+json")]) == ENVELOPE
    assert from_kafka(*binary()) == ENVELOPE


def test_a_record_without_ce_headers_is_structured_even_with_other_headers():
    assert from_kafka(ENVELOPE.to_json(), [("dlq.error", b"x")]) == ENVELOPE
    assert from_kafka(ENVELOPE.to_json()) == ENVELOPE


@pytest.mark.parametrize("drop", ["id", "type", "source", "subject", "actor", "time"])
def test_a_binary_record_missing_a_required_attribute_is_not_an_envelope(drop):
    with pytest.raises(ValidationError):
        from_kafka(*binary(drop=drop))


@pytest.mark.parametrize("value", [b"not json", b"[1, 2]", b"", b'"text"'])
def test_a_binary_record_whose_value_is_not_a_json_object_is_not_an_envelope(value):
    with pytest.raises(ValidationError):
        from_kafka(value, binary()[1])
