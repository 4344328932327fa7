"""Money is strict integer minor units with limits that are settings; durations read ISO 8601 or seconds."""

from datetime import timedelta

import pytest
from platform_runtime.errors import Rejected
from platform_runtime.settings import ServiceSettings
from platform_schemas.commands.contracts import AddMilestone, GiveBonus, MilestoneSpec
from platform_schemas.commands.saga import ChargeClient
from pydantic import ValidationError

from contracts.domain.limits import Limits
from contracts.settings import ContractsSettings

pytestmark = pytest.mark.unit

NOT_INTEGERS = ["1500", 1500.0, 10.5, True, None, "15.00", [1500]]


# -- money on the wire ----------------------------------------------------------------------


@pytest.mark.parametrize("amount", NOT_INTEGERS, ids=repr)
def test_a_milestone_amount_must_be_a_json_integer(amount):
    with pytest.raises(ValidationError):
        MilestoneSpec.model_validate({"milestone_id": "m-1", "title": "t", "amount": amount})


@pytest.mark.parametrize("amount", NOT_INTEGERS, ids=repr)
def test_a_charge_amount_between_services_must_be_an_integer_too(amount):
    with pytest.raises(ValidationError):
        ChargeClient.model_validate({"charge_id": "x", "saga_id": "s", "contract_id": "c", "client_id": "cl",
                                     "amount": amount, "currency": "USD", "description": "d"})


def test_an_amount_parsed_from_json_text_stays_an_exact_integer():
    spec = MilestoneSpec.model_validate_json('{"milestone_id": "m-1", "title": "t", "amount": 100000000}')
    assert spec.amount == 100_000_000 and type(spec.amount) is int


@pytest.mark.parametrize("model,fields", [
    (AddMilestone, {"contract_id": "c", "milestone_id": "m", "title": "t"}),
    (GiveBonus, {"contract_id": "c", "bonus_id": "b", "note": "n"}),
])
def test_every_command_carrying_money_refuses_a_float(model, fields):
    with pytest.raises(ValidationError):
        model.model_validate({**fields, "amount": 500.0})


# -- the limits (domain) --------------------------------------------------------------------


@pytest.mark.parametrize("amount,allowed", [
    (499, False), (500, True), (150_000, True), (100_000_000, True), (100_000_001, False), (0, False), (-500, False),
])
def test_a_milestone_is_at_least_5_00_and_at_most_1_000_000_00(amount, allowed):
    if allowed:
        Limits().check_milestone(amount)
    else:
        with pytest.raises(Rejected) as refusal:
            Limits().check_milestone(amount)
        assert refusal.value.reason_code == "amount_out_of_range"
        assert str(amount) in refusal.value.message


@pytest.mark.parametrize("amount,allowed", [(99, False), (100, True), (0, False), (-1, False)])
def test_a_bonus_is_at_least_1_00(amount, allowed):
    if allowed:
        Limits().check_bonus(amount)
    else:
        with pytest.raises(Rejected):
            Limits().check_bonus(amount)


def test_the_limits_come_from_the_contracts_settings(monkeypatch):
    monkeypatch.setenv("MILESTONE_MIN_AMOUNT", "1000")
    monkeypatch.setenv("MILESTONE_MAX_AMOUNT", "2000")
    monkeypatch.setenv("BONUS_MIN_AMOUNT", "50")
    limits = ContractsSettings(database_url="postgresql+asyncpg://x/y").limits
    assert limits == Limits(1000, 2000, 50)


# -- durations ------------------------------------------------------------------------------


def settings(**env: str) -> ContractsSettings:
    return ContractsSettings(database_url="postgresql+asyncpg://x/y", **{k.lower(): v for k, v in env.items()})


@pytest.mark.parametrize("text,expected", [
    ("P14D", timedelta(days=14)),
    ("PT5S", timedelta(seconds=5)),
    ("PT0.2S", timedelta(milliseconds=200)),
    ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)),
    ("P2W", timedelta(weeks=2)),
    ("30", timedelta(seconds=30)),
    ("0.25", timedelta(milliseconds=250)),
    (" PT6S ", timedelta(seconds=6)),
    (45, timedelta(seconds=45)),
    (1.5, timedelta(seconds=1.5)),
    (timedelta(hours=3), timedelta(hours=3)),
])
def test_a_duration_reads_iso_8601_or_a_number_of_seconds(text, expected):
    assert settings(auto_release_after=text).auto_release_after == expected


@pytest.mark.parametrize("text", ["P1M", "P1Y", "soon", ""])
def test_a_duration_without_a_fixed_length_or_unreadable_is_refused(text):
    with pytest.raises(ValidationError):
        settings(auto_release_after=text)


def test_durations_are_read_from_the_environment_by_their_documented_names(monkeypatch):
    monkeypatch.setenv("AUTO_RELEASE_AFTER", "PT6S")
    monkeypatch.setenv("REVIEW_REMINDER_BEFORE", "3")
    monkeypatch.setenv("REFUND_RESPONSE_WINDOW", "P7D")
    monkeypatch.setenv("ACCOUNT_INACTIVE_AFTER", "P30D")
    read = ContractsSettings(database_url="postgresql+asyncpg://x/y")
    assert (read.auto_release_after, read.review_reminder_before, read.refund_response_window,
            read.account_inactive_after) == (timedelta(seconds=6), timedelta(seconds=3), timedelta(days=7),
                                             timedelta(days=30))


def test_the_documented_defaults_hold_when_nothing_is_set(monkeypatch):
    for name in ("AUTO_RELEASE_AFTER", "REVIEW_REMINDER_BEFORE", "REFUND_RESPONSE_WINDOW", "ACCOUNT_INACTIVE_AFTER",
                 "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    read = ContractsSettings(database_url="postgresql+asyncpg://x/y")
    assert (read.auto_release_after, read.review_reminder_before, read.refund_response_window,
            read.account_inactive_after) == (timedelta(days=14), timedelta(days=2), timedelta(days=7),
                                             timedelta(days=365))
    assert read.kafka_bootstrap_servers == "127.0.0.1:9092"


def test_the_runtime_durations_take_both_forms_too(monkeypatch):
    monkeypatch.setenv("RELAY_IDLE_CHECK", "PT30S")
    monkeypatch.setenv("CONSUMER_RETRY_BACKOFF", "0.05")
    read = ServiceSettings(database_url="postgresql+asyncpg://x/y", http_port=1)
    assert (read.relay_idle_check, read.consumer_retry_backoff) == (timedelta(seconds=30), timedelta(milliseconds=50))
