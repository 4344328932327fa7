"""The platform's own messages are written without building the Envelope model (encode_new), byte for byte as
the model would write them, and still held to the envelope's bounds."""

import uuid
from datetime import date, datetime, timedelta, timezone

import pytest

from platform_schemas.envelope import Envelope, encode_new, new_envelope, new_id
from platform_schemas.events.billing import BonusPaid, TransactionRecorded

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 2, 16, 0, 0, 123456, tzinfo=timezone.utc)
PAID = BonusPaid(business_date=date(2026, 12, 1), bonus_id="b-1", contract_id="c-1", client_id="cl-1",
                 freelancer_id="fl-1", amount=1234, currency="USD", charge_id="bc-1")
RECORDED = TransactionRecorded(occurred_at=NOW, transaction_id="b-1:bonus_charge", account_id="cl-1",
                               kind="bonus_charge", description="Bonus charge to fl-1 — café ✓ \"quoted\"",
                               amount=-1234, currency="USD", contract_id="c-1", bonus_id="b-1")
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("data", [PAID, RECORDED])
@pytest.mark.parametrize("attributes", [
    {"id": "e-1", "correlationid": "corr-1", "causationid": "cause-1", "time": NOW, "traceparent": TRACE},
    {"id": "e-2", "time": NOW.astimezone(timezone(timedelta(hours=-5)))},  # written in UTC, as the model does
    {"id": "e-3", "time": NOW, "traceparent": TRACE, "tracestate": "vendor=1"},
])
def test_the_bytes_are_those_of_the_model(data, attributes):
    message_id, payload = encode_new(data, subject="c-1", actor="client:cl-1", source="billing", **attributes)
    assert message_id == attributes["id"]
    assert payload == new_envelope(data, subject="c-1", actor="client:cl-1", source="billing", **attributes).to_json()
    assert Envelope.model_validate_json(payload).data == data.model_dump(mode="json", exclude_none=True)


def test_a_new_id_is_its_own_correlation_id():
    message_id, payload = encode_new(PAID, subject="c-1", actor="system", source="billing")
    envelope = Envelope.model_validate_json(payload)
    assert envelope.id == envelope.correlationid == message_id and envelope.causationid is None


@pytest.mark.parametrize("attributes", [
    {"subject": "s" * 129}, {"subject": ""}, {"actor": "a\nb"}, {"actor": "x" * 129},
    {"correlationid": "c\x00"}, {"causationid": "c" * 129}, {"time": datetime(2026, 12, 2, 16, 0)},
])
def test_attributes_out_of_the_envelopes_bounds_are_refused(attributes):
    given = {"subject": "c-1", "actor": "system", **attributes}
    with pytest.raises(ValueError):
        new_envelope(PAID, source="billing", **given)  # the model refuses them ...
    with pytest.raises(ValueError):
        encode_new(PAID, source="billing", **given)  # ... and so does the encoder that skips it


def test_a_printable_attribute_outside_latin_is_taken_as_the_model_takes_it():
    subject = "contract-\u200bzero-width"  # not isprintable(), yet no control character
    _, payload = encode_new(PAID, subject=subject, actor="system", source="billing", id="e-9", time=NOW)
    assert payload == new_envelope(PAID, subject=subject, actor="system", source="billing", id="e-9", time=NOW).to_json()


def test_a_new_id_is_a_random_uuid_of_version_4_as_uuid4_writes_it():
    ids = {new_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # every hex digit turns up in every random position: no bit is stuck
    for position in (0, 7, 9, 15, 20, 24, 35):
        assert {text[position] for text in ids} == set("0123456789abcdef")
    assert {text[19] for text in ids} == set("89ab")
