"""escrowctl's input side without any server: which topic a command goes to, its subject, and the words an
operator reads when what they typed is wrong."""

import pytest
from escrowctl.commands import BadInput, build, read_data, subject_of
from escrowctl.kafka_io import parse_position

pytestmark = pytest.mark.unit

OFFER = {"contract_id": "c-1", "client_id": "ann", "freelancer_id": "bob", "title": "Logo", "currency": "USD",
         "milestones": [{"milestone_id": "m-1", "title": "Draft", "amount": 150000}]}


def test_a_valid_command_goes_to_its_topic_keyed_by_its_subject():
    topic, envelope = build("SendOffer", OFFER, actor="ann", source="escrowctl", id="cmd-1")
    assert (topic, envelope.subject, envelope.id, envelope.type) == ("contracts.commands", "c-1", "cmd-1", "SendOffer")
    assert envelope.dataschema == "urn:escrow:schema:SendOffer:1" and envelope.data["milestones"][0]["amount"] == 150000
    topic, envelope = build("RunBonusBatch", {"business_date": "2026-11-30"}, actor="admin:ops", source="x")
    assert (topic, envelope.subject) == ("billing.admin-commands", "bonus-batch-2026-11-30")
    topic, envelope = build("SuspendAccount", {"account_id": "ann", "reason": "fraud", "appealable": False},
                            actor="admin:ops", source="x")
    assert (topic, envelope.subject) == ("contracts.admin-commands", "ann")


@pytest.mark.parametrize(("data", "said"), [
    ({**OFFER, "currency": "JPY"}, "currency: Input should be 'USD', 'EUR' or 'GBP'"),
    ({**OFFER, "milestones": [{"milestone_id": "m-1", "title": "Draft", "amount": "1500"}]},
     "milestones.0.amount: Input should be a valid integer"),
    ({k: v for k, v in OFFER.items() if k != "client_id"}, "client_id: Field required"),
    ({**OFFER, "surprise": 1}, "surprise: Extra inputs are not permitted"),
])
def test_every_problem_with_the_data_is_named_with_its_field(data, said):
    with pytest.raises(BadInput, match="SendOffer data does not match its schema") as raised:
        build("SendOffer", data, actor="ann", source="x")
    assert said in str(raised.value)


def test_an_unknown_or_internal_type_is_refused_with_the_list_of_commands():
    for name in ("PayMe", "ChargeClient", "OfferSent"):  # ChargeClient is the sagas' own, OfferSent an event
        with pytest.raises(BadInput, match=f"'{name}' is not a command of the platform. Commands: AcceptOffer"):
            build(name, {}, actor="ann", source="x")


def test_a_bad_envelope_attribute_is_named():
    with pytest.raises(BadInput, match="the envelope is not valid:\n  actor"):
        build("AcceptOffer", {"contract_id": "c-1"}, actor="", source="x")


def test_data_is_read_inline_from_a_file_or_refused_in_words(tmp_path):
    path = tmp_path / "offer.json"
    path.write_text('{"contract_id": "c-9"}')
    assert read_data(f"@{path}") == {"contract_id": "c-9"}
    with pytest.raises(BadInput, match="data is not JSON: Expecting value at line 1 column 1"):
        read_data("nope")
    with pytest.raises(BadInput, match="data must be a JSON object"):
        read_data("[1]")
    with pytest.raises(BadInput, match="give --subject"):
        subject_of("SetPrimaryBillingMethod", {"billing_method_id": "x"})


def test_dead_letter_positions_read_as_printed():
    assert parse_position("contracts.commands.dlq:3:17") == ("contracts.commands.dlq", 3, 17)
    assert parse_position("contracts.commands:3:17") == ("contracts.commands.dlq", 3, 17)
    with pytest.raises(ValueError, match="is not <topic>.dlq:<partition>:<offset>"):
        parse_position("contracts.commands.dlq:x")


def test_events_since_takes_a_time_or_a_duration_back_from_now():
    from datetime import datetime, timedelta, timezone

    from escrowctl.main import since_time

    assert since_time("2026-12-01T10:00:00Z") == datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
    assert since_time("2026-12-01T10:00") == datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
    assert abs(datetime.now(timezone.utc) - timedelta(minutes=10) - since_time("PT10M")) < timedelta(seconds=5)
    with pytest.raises(ValueError, match="neither a time"):
        since_time("yesterday")
