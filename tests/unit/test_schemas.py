"""The wire contract: the models match CONTRACT.md, refuse what it refuses, and the generated files are current."""

import copy
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from platform_schemas import Envelope, generate, new_envelope, parse_dataschema, registry, topics
from platform_schemas.asyncapi import build_asyncapi, message_key
from platform_schemas.commands.contracts import MilestoneSpec, SendOffer
from platform_schemas.events.common import REASON_CODES, CommandRejected

pytestmark = pytest.mark.unit

# -- the names CONTRACT.md promises, written out from it ---------------------------------------

# The commands whose actor is admin:<name> travel on the admin topics (CONTRACT.md's "Trust": `admin:` actors
# are accepted only there), the others on the integrator topics.
CONTRACT_COMMANDS = {
    topics.CONTRACTS_COMMANDS: """RequestReactivation SendOffer WithdrawOffer AcceptOffer DeclineOffer AddMilestone
        EditMilestone RemoveMilestone ActivateMilestone SubmitWork ApproveMilestone RequestChanges GiveBonus
        EndContract CancelContract RespondToRefundRequest""",
    topics.CONTRACTS_ADMIN_COMMANDS: "RegisterAccount SuspendAccount ReactivateAccount ResolveDispute",
    topics.BILLING_COMMANDS: "AddBillingMethod SetPrimaryBillingMethod RemoveBillingMethod",
    topics.BILLING_ADMIN_COMMANDS: "RunBonusBatch",
}
CONTRACT_EVENTS = {
    topics.CONTRACTS_EVENTS: """AccountRegistered AccountSuspended ReactivationRequested AccountReactivated
        ReactivationRefused AccountMarkedInactive OfferSent OfferFundingFailed OfferWithdrawn OfferDeclined
        ContractStarted MilestoneAdded MilestoneEdited MilestoneRemoved MilestoneFunded MilestoneFundingFailed
        WorkSubmitted ChangesRequested ReviewPeriodEndingSoon MilestoneApproved MilestoneAutoReleased MilestonePaid
        BonusGiven RefundRequested RefundAccepted DisputeOpened DisputeResolved MilestoneRefunded ContractEnded
        ContractCancelled CommandRejected""",
    topics.ESCROW_EVENTS: "EscrowFunded EscrowReleased EscrowRefunded BonusPosted",
    topics.BILLING_EVENTS: """BillingMethodAdded PrimaryBillingMethodChanged BillingMethodRemoved ClientCharged
        ChargeFailed ChargeRefunded TransactionRecorded BonusBatchStarted BonusPaid BonusFailed BonusBatchCompleted
        CommandRejected""",
    topics.NOTIFICATIONS_EVENTS: "NotificationSent NotificationFailed",
}
PROMISED = [(topic, name) for table in (CONTRACT_COMMANDS, CONTRACT_EVENTS) for topic, names in table.items()
            for name in names.split()]

# Who writes and who consumes each topic ("other back ends"/"operators" are outside the platform).
FLOWS = [
    (topics.CONTRACTS_COMMANDS, ["other back ends"], ["contracts"]),
    (topics.BILLING_COMMANDS, ["other back ends"], ["billing"]),
    (topics.CONTRACTS_ADMIN_COMMANDS, ["operators"], ["contracts"]),
    (topics.BILLING_ADMIN_COMMANDS, ["operators"], ["billing"]),
    (topics.BILLING_SAGA_COMMANDS, ["contracts"], ["billing"]),
    (topics.ESCROW_SAGA_COMMANDS, ["contracts", "billing"], ["escrow"]),
    (topics.CONTRACTS_EVENTS, ["contracts"], ["billing", "notifications"]),
    (topics.ESCROW_EVENTS, ["escrow"], ["contracts", "billing"]),
    (topics.BILLING_EVENTS, ["billing"], ["contracts", "escrow", "notifications"]),
    (topics.NOTIFICATIONS_EVENTS, ["notifications"], []),
]

# -- valid payloads to break one field at a time -----------------------------------------------

MILESTONE = {"milestone_id": "m-1", "title": "Design", "amount": 1500}
POSTING = {"posting_id": "p-1", "debit_account": "escrow:c-1", "credit_account": "freelancer:f-1",
           "amount": 1500, "currency": "USD"}
VALID: dict[str, dict[str, Any]] = {
    "RegisterAccount": {"account_id": "client-17", "role": "client", "name": "Ann", "email": "ann@example.com"},
    "AcceptOffer": {"contract_id": "c-1001"},
    "SendOffer": {"contract_id": "c-1001", "client_id": "client-17", "freelancer_id": "fl-3", "title": "Logo",
                  "currency": "USD", "milestones": [MILESTONE]},
    "AddMilestone": {"contract_id": "c-1", "milestone_id": "m-2", "title": "Build", "amount": 1500},
    "EditMilestone": {"contract_id": "c-1", "milestone_id": "m-1", "amount": 1500},
    "ApproveMilestone": {"contract_id": "c-1", "milestone_id": "m-1", "next_milestone": MILESTONE},
    "GiveBonus": {"contract_id": "c-1", "bonus_id": "b-1", "amount": 1500, "note": "Thanks"},
    "ResolveDispute": {"contract_id": "c-1", "milestone_id": "m-1", "release_amount": 1000, "refund_amount": 500},
    "AddBillingMethod": {"account_id": "client-17", "billing_method_id": "bm-1", "kind": "card",
                         "token": "tok_visa"},
    "ChargeClient": {"charge_id": "ch-1", "saga_id": "s-1", "contract_id": "c-1", "client_id": "client-17",
                     "amount": 1500, "currency": "USD", "description": "Milestone m-1"},
    "MilestoneAdded": {"contract_id": "c-1", "milestone_id": "m-2", "title": "Build", "amount": 1500,
                       "currency": "USD"},
    "EscrowReleased": {"release_id": "r-1", "saga_id": "s-1", "contract_id": "c-1", "milestone_id": "m-1",
                       "client_id": "client-17", "freelancer_id": "fl-3", "amount": 1500, "currency": "USD",
                       "postings": [POSTING]},
    "TransactionRecorded": {"transaction_id": "t-1", "account_id": "client-17", "kind": "fixed_price_charge",
                            "description": "Milestone m-1", "amount": -1500, "currency": "USD",
                            "occurred_at": "2026-11-26T14:00:00Z"},
    "BonusBatchCompleted": {"business_date": "2026-11-25", "bonuses": 1, "paid": 1, "failed": 0,
                            "totals": {"USD": 1500}},
}

Path = tuple[str | int, ...]

AMOUNT_FIELDS: list[tuple[str, Path]] = [
    ("SendOffer", ("milestones", 0, "amount")),
    ("AddMilestone", ("amount",)),
    ("EditMilestone", ("amount",)),
    ("ApproveMilestone", ("next_milestone", "amount")),
    ("GiveBonus", ("amount",)),
    ("ResolveDispute", ("release_amount",)),
    ("ResolveDispute", ("refund_amount",)),
    ("ChargeClient", ("amount",)),
    ("MilestoneAdded", ("amount",)),
    ("EscrowReleased", ("amount",)),
    ("EscrowReleased", ("postings", 0, "amount")),
    ("TransactionRecorded", ("amount",)),
    ("BonusBatchCompleted", ("totals", "USD")),
]
NOT_AMOUNTS = ["1500", "10", 10.0, 1500.0, 10.5, True, False]

ID_FIELDS: list[tuple[str, Path]] = [
    ("AcceptOffer", ("contract_id",)),
    ("SendOffer", ("client_id",)),
    ("SendOffer", ("milestones", 0, "milestone_id")),
    ("GiveBonus", ("bonus_id",)),
    ("RegisterAccount", ("account_id",)),
    ("AddBillingMethod", ("billing_method_id",)),
    ("EscrowReleased", ("postings", 0, "posting_id")),
]
BAD_IDS = ["", "c 1001", "c/1001", "c#1", "c-1001\n", "ç-1", "c,1", "x" * 65]
GOOD_IDS = ["c-1001", "a.b:c_d-1", "X", "x" * 64]

CURRENCY_FIELDS: list[tuple[str, Path]] = [
    ("SendOffer", ("currency",)),
    ("ChargeClient", ("currency",)),
    ("MilestoneAdded", ("currency",)),
    ("EscrowReleased", ("postings", 0, "currency")),
]


def with_value(type_name: str, path: Path, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID[type_name])
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return data


def validate(type_name: str, data: dict[str, Any], mode: str) -> BaseModel:
    model = registry.ALL[type_name]
    return model.model_validate_json(json.dumps(data)) if mode == "json" else model.model_validate(data)


def label(case: tuple[str, Path]) -> str:
    return f"{case[0]}.{'.'.join(map(str, case[1]))}"


# -- generated files -----------------------------------------------------------------------------


def test_committed_schema_files_equal_freshly_generated_ones():
    drifted = generate.drifted()
    assert not drifted, f"generated schema files are out of date, run `make schemas`: {drifted}"


def test_check_mode_lists_drifted_and_stale_files_and_exits_1(tmp_path, capsys):
    generate.write(tmp_path)
    assert generate.main(["--check", "--root", str(tmp_path)]) == 0
    (tmp_path / "json" / "SendOffer.v1.json").write_text("{}\n")
    (tmp_path / "json" / "Retired.v1.json").write_text("{}\n")
    assert generate.main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "SendOffer.v1.json" in err and "Retired.v1.json" in err and "make schemas" in err
    generate.write(tmp_path)
    assert generate.drifted(tmp_path) == [] and not (tmp_path / "json" / "Retired.v1.json").exists()


def test_generation_is_deterministic():
    assert generate.expected_files() == generate.expected_files()


def test_every_registered_version_has_a_json_schema_named_by_its_dataschema():
    schemas = generate.json_schemas()
    assert set(schemas) == {"Envelope.json"} | {f"{n}.v{v}.json" for n, v in registry.VERSIONS}
    for (name, version), _ in registry.VERSIONS.items():
        schema = schemas[f"{name}.v{version}.json"]
        assert schema["$id"] == f"urn:escrow:schema:{name}:{version}"
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["title"] == name
        assert schema["x-topics"] == [t for t, types in registry.BY_TOPIC.items() if name in types]


# -- the contract's names ------------------------------------------------------------------------


@pytest.mark.parametrize(("topic", "type_name"), PROMISED, ids=[f"{t}:{n}" for t, n in PROMISED])
def test_every_type_the_contract_names_is_registered_on_its_topic(topic, type_name):
    assert type_name in registry.BY_TOPIC[topic]
    assert registry.model_for(type_name, 1) is registry.ALL[type_name]


def test_registry_topics_are_all_declared_topics():
    assert set(registry.BY_TOPIC) <= {t.name for t in topics.TOPICS}


# -- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["python", "json"])
@pytest.mark.parametrize("value", NOT_AMOUNTS, ids=repr)
@pytest.mark.parametrize("case", AMOUNT_FIELDS, ids=label)
def test_amounts_reject_anything_but_an_integer(case, value, mode):
    with pytest.raises(ValidationError):
        validate(case[0], with_value(*case, value), mode)


@pytest.mark.parametrize("mode", ["python", "json"])
@pytest.mark.parametrize("case", AMOUNT_FIELDS, ids=label)
def test_amounts_accept_integers(case, mode):
    validate(case[0], with_value(*case, 1500), mode)


@pytest.mark.parametrize("field", ["release_amount", "refund_amount"])
def test_dispute_amounts_are_zero_or_more(field):
    validate("ResolveDispute", with_value("ResolveDispute", (field,), 0), "python")
    with pytest.raises(ValidationError):
        validate("ResolveDispute", with_value("ResolveDispute", (field,), -1), "python")


@pytest.mark.parametrize("value", BAD_IDS, ids=repr)
@pytest.mark.parametrize("case", ID_FIELDS, ids=label)
def test_ids_reject_bad_characters_and_more_than_64_characters(case, value):
    with pytest.raises(ValidationError):
        validate(case[0], with_value(*case, value), "python")


@pytest.mark.parametrize("value", GOOD_IDS)
@pytest.mark.parametrize("case", ID_FIELDS, ids=label)
def test_ids_accept_1_to_64_allowed_characters(case, value):
    validate(case[0], with_value(*case, value), "python")


@pytest.mark.parametrize("value", ["usd", "Usd", "JPY", "XXX", "", 840])
@pytest.mark.parametrize("case", CURRENCY_FIELDS, ids=label)
def test_currency_rejects_anything_but_usd_eur_gbp(case, value):
    with pytest.raises(ValidationError):
        validate(case[0], with_value(*case, value), "python")


@pytest.mark.parametrize("value", ["USD", "EUR", "GBP"])
@pytest.mark.parametrize("case", CURRENCY_FIELDS, ids=label)
def test_currency_accepts_usd_eur_gbp(case, value):
    validate(case[0], with_value(*case, value), "python")


def test_bonus_batch_totals_are_keyed_by_currency():
    with pytest.raises(ValidationError):
        validate("BonusBatchCompleted", with_value("BonusBatchCompleted", ("totals",), {"JPY": 1}), "python")


@pytest.mark.parametrize(("count", "ok"), [(0, False), (1, True), (50, True), (51, False)])
def test_send_offer_takes_1_to_50_milestones(count, ok):
    milestones = [{**MILESTONE, "milestone_id": f"m-{i}"} for i in range(count)]
    data = with_value("SendOffer", ("milestones",), milestones)
    if ok:
        assert len(SendOffer.model_validate(data).milestones) == count
    else:
        with pytest.raises(ValidationError):
            SendOffer.model_validate(data)


COMMANDS = sorted(n for topic, types in registry.BY_TOPIC.items() if topic.endswith("commands") for n in types)
EVENTS = sorted(n for topic, types in registry.BY_TOPIC.items() if topic.endswith(".events") for n in types)


@pytest.mark.parametrize("type_name", COMMANDS)
def test_command_data_with_an_unknown_field_is_rejected(type_name):
    with pytest.raises(ValidationError) as raised:
        registry.ALL[type_name].model_validate({**VALID.get(type_name, {}), "surprise": 1})
    assert any(e["type"] == "extra_forbidden" and e["loc"] == ("surprise",) for e in raised.value.errors())


def test_nested_objects_of_a_command_with_an_unknown_field_are_rejected():
    nested = copy.deepcopy(VALID["SendOffer"])
    nested["milestones"][0]["surprise"] = 1
    with pytest.raises(ValidationError):
        SendOffer.model_validate(nested)


# Schema evolution: a producer adds an optional field (same version); a consumer still on the older schema
# must go on reading the event. So events, and the values inside them, ignore fields they do not know.

@pytest.mark.parametrize("type_name", EVENTS)
def test_every_event_model_and_its_json_schema_tolerate_unknown_fields(type_name):
    model = registry.ALL[type_name]
    assert model.model_config.get("extra") == "ignore", f"{type_name} must derive from platform_schemas.types.Event"
    schema = json.loads((generate.DEFAULT_ROOT / "json" / generate.schema_file_name(type_name, model.VERSION))
                        .read_text())

    def closed(node: Any) -> bool:
        if isinstance(node, dict):
            return node.get("additionalProperties") is False or any(closed(v) for v in node.values())
        return isinstance(node, list) and any(closed(v) for v in node)

    assert not closed(schema), f"{type_name}'s JSON Schema forbids fields it does not know"


@pytest.mark.parametrize("case", [("EscrowReleased", ()), ("EscrowReleased", ("postings", 0)),
                                  ("MilestoneAdded", ())], ids=label)
def test_an_event_with_a_field_added_by_a_newer_producer_reads_with_the_older_model(case):
    type_name, path = case
    newer = copy.deepcopy(VALID[type_name])
    target: Any = newer
    for step in path:
        target = target[step]
    target["added_in_a_later_release"] = {"any": "value"}
    older = registry.ALL[type_name].model_validate(newer)
    assert older.model_dump(mode="json") == registry.ALL[type_name].model_validate(VALID[type_name]).model_dump(
        mode="json")


# -- envelope ------------------------------------------------------------------------------------

ENVELOPE = {
    "specversion": "1.0", "id": "9b2f6a0e-6f0b-4a57-9d43-0c1a7f1e2b11", "source": "marketplace-web",
    "type": "AcceptOffer", "time": "2026-11-26T14:00:00Z", "subject": "c-1001", "actor": "fl-3",
    "dataschema": "urn:escrow:schema:AcceptOffer:1", "data": {"contract_id": "c-1001"},
}


@pytest.mark.parametrize("field", ["id", "source", "type", "time", "subject", "actor", "data"])
@pytest.mark.parametrize("broken", ["missing", "empty"])
def test_envelope_requires_its_attributes(field, broken):
    envelope = dict(ENVELOPE)
    if broken == "missing":
        del envelope[field]
    else:
        envelope[field] = ""
    with pytest.raises(ValidationError):
        Envelope.model_validate(envelope)


@pytest.mark.parametrize("version", ["0.3", "1", "2.0", 1.0])
def test_envelope_specversion_must_be_1_0(version):
    with pytest.raises(ValidationError):
        Envelope.model_validate({**ENVELOPE, "specversion": version})


def test_envelope_always_carries_specversion_1_0():
    envelope = Envelope.model_validate({k: v for k, v in ENVELOPE.items() if k != "specversion"})
    assert json.loads(envelope.to_json())["specversion"] == "1.0"


@pytest.mark.parametrize("time", ["2026-11-26T14:00:00", "2026-11-26 14:00:00", "yesterday"])
def test_envelope_rejects_timestamps_without_an_offset(time):
    with pytest.raises(ValidationError):
        Envelope.model_validate({**ENVELOPE, "time": time})


def test_envelope_times_are_normalised_to_utc():
    envelope = Envelope.model_validate({**ENVELOPE, "time": "2026-11-26T16:00:00+02:00"})
    assert envelope.time == datetime(2026, 11, 26, 14, tzinfo=timezone.utc)
    assert json.loads(envelope.to_json())["time"] == "2026-11-26T14:00:00Z"


def test_envelope_keeps_extension_attributes():
    envelope = Envelope.model_validate({**ENVELOPE, "traceparent": "00-abc-def-01"})
    assert json.loads(envelope.to_json())["traceparent"] == "00-abc-def-01"


def offer() -> SendOffer:
    return SendOffer(contract_id="c-1001", client_id="client-17", freelancer_id="fl-3", title="Logo",
                     currency="USD", milestones=[MilestoneSpec(**MILESTONE)])


def test_new_envelope_names_type_and_dataschema_and_defaults_correlation_to_its_id():
    envelope = new_envelope(offer(), subject="c-1001", actor="client-17", source="marketplace-web")
    assert envelope.type == "SendOffer"
    assert envelope.dataschema == "urn:escrow:schema:SendOffer:1"
    assert envelope.correlationid == envelope.id
    assert envelope.specversion == "1.0" and envelope.time.tzinfo is not None


def test_new_envelope_keeps_given_ids():
    envelope = new_envelope(offer(), subject="c-1001", actor="client-17", source="contracts", id="e-1",
                            correlationid="cmd-1", causationid="cmd-1")
    assert (envelope.id, envelope.correlationid, envelope.causationid) == ("e-1", "cmd-1", "cmd-1")


def test_new_envelope_round_trips_through_json_to_the_same_payload():
    sent = offer()
    envelope = new_envelope(sent, subject="c-1001", actor="client-17", source="marketplace-web",
                            time=datetime(2026, 11, 26, 15, tzinfo=timezone(timedelta(hours=1))))
    received = Envelope.model_validate_json(envelope.to_json())
    assert received == envelope
    model = registry.model_for(received.type, parse_dataschema(received.dataschema))
    assert model is SendOffer and model.model_validate(received.data) == sent


# -- events --------------------------------------------------------------------------------------

EVENT_TOPICS = [t for t in registry.BY_TOPIC if t.endswith(".events")]
EVENTS = sorted({name for t in EVENT_TOPICS for name in registry.BY_TOPIC[t]})


def _has_amount(fields) -> bool:
    return any(f == "amount" or f.endswith("_amount") for f in fields)


def concerns_money(type_name: str) -> bool:
    """An amount among its own fields or in the objects it lists (milestones, postings) that do not name their
    own currency (an upcoming item does: a person's items may be in several currencies)."""
    schema = registry.ALL[type_name].model_json_schema()
    fields = set(schema["properties"])
    for definition in schema.get("$defs", {}).values():
        if "currency" not in definition.get("properties", {}):
            fields |= set(definition.get("properties", {}))
    return _has_amount(fields)


MONEY_EVENTS = [name for name in EVENTS if concerns_money(name)]


def test_money_events_are_recognised():
    assert {"MilestonePaid", "EscrowFunded", "ClientCharged", "TransactionRecorded", "DisputeResolved"} <= set(
        MONEY_EVENTS
    )


@pytest.mark.parametrize("type_name", MONEY_EVENTS)
def test_every_event_about_money_carries_its_currency(type_name):
    assert "currency" in registry.ALL[type_name].model_fields


def test_command_rejected_has_a_reason_code_from_the_closed_list():
    assert {"command_id", "command_type", "reason_code", "message"} <= set(CommandRejected.model_fields)
    for code in ("invalid_data", "unknown_command", "not_found", "forbidden", "invalid_state",
                 "account_not_active", "idempotency_conflict", "amount_out_of_range", "currency_mismatch"):
        assert code in REASON_CODES
    with pytest.raises(ValidationError):
        CommandRejected(command_id="x", command_type="SendOffer", reason_code="because", message="no")


# -- AsyncAPI ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    return build_asyncapi()


def test_asyncapi_is_version_3_with_a_channel_per_topic(asyncapi):
    assert asyncapi["asyncapi"].startswith("3.")
    assert set(asyncapi["channels"]) == {t.name for t in topics.TOPICS}
    for topic in topics.TOPICS:
        channel = asyncapi["channels"][topic.name]
        kafka = channel["bindings"]["kafka"]
        assert channel["address"] == kafka["topic"] == topic.name
        assert kafka["partitions"] == topic.partitions
        assert kafka["topicConfiguration"]["retention.ms"] == topic.retention_ms


@pytest.mark.parametrize(("topic", "writers", "consumers"), FLOWS, ids=[f[0] for f in FLOWS])
def test_asyncapi_says_who_writes_and_who_consumes_each_topic(asyncapi, topic, writers, consumers):
    channels, operations = asyncapi["channels"], asyncapi["operations"]
    assert channels[topic]["x-writers"] == writers and channels[topic]["x-consumers"] == consumers
    assert channels[topics.dlq(topic)]["x-writers"] == consumers
    received_by = sorted(o["tags"][0]["name"] for o in operations.values()
                         if o["action"] == "receive" and o["channel"]["$ref"] == f"#/channels/{topic}")
    assert received_by == sorted(consumers)
    for service in consumers:
        operation = operations[f"{service}.receive.{topic}"]
        assert operation["bindings"]["kafka"]["groupId"]["const"] == service
        assert f"{service}.send.{topics.dlq(topic)}" in operations


def test_asyncapi_carries_every_message_keyed_by_subject_with_its_data_schema(asyncapi):
    messages = asyncapi["components"]["messages"]
    for (name, version), model in registry.VERSIONS.items():
        key = message_key(name, version)
        message = messages[key]
        assert message["contentType"] == "application/cloudevents+json"
        assert "subject" in message["bindings"]["kafka"]["key"]["description"]
        envelope_ref, specifics = message["payload"]["allOf"]
        assert envelope_ref == {"$ref": "#/components/schemas/Envelope"}
        assert specifics["properties"]["type"] == {"const": name}
        assert specifics["properties"]["data"] == {"$ref": f"#/components/schemas/{key}"}
        for topic in registry.BY_TOPIC:
            on_channel = key in asyncapi["channels"][topic]["messages"]
            assert on_channel == (name in registry.BY_TOPIC[topic])


def test_asyncapi_references_all_resolve(asyncapi):
    def refs(node: Any):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(asyncapi):
        assert ref.startswith("#/"), ref
        target: Any = asyncapi
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
