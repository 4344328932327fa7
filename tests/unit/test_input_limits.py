"""Limits on every value (issue 9, item 2): strings as long as their columns at most and free of control
characters, envelope attributes bounded, lists capped, amounts and sums within the settings."""

import json


import pytest
from platform_runtime.errors import Rejected
from platform_schemas import Envelope, new_envelope
from platform_schemas.commands.contracts import GiveBonus, MilestoneSpec, RegisterAccount, SendOffer, SubmitWork
from pydantic import ValidationError

from contracts.domain.limits import Limits

pytestmark = pytest.mark.unit
GOOD = new_envelope(RegisterAccount(account_id="a-1", role="client", name="Ann", email="a@example.test"),
                    subject="a-1", actor="admin:ops", source="tests")


def envelope_with(**changes) -> bytes:
    body = json.loads(GOOD.to_json())
    body.update(changes)
    return json.dumps(body).encode()


@pytest.mark.parametrize("attribute,value", [
    ("correlationid", "c" * 129), ("type", "T" * 101), ("source", "s" * 201), ("id", "i" * 129),
    ("subject", "s" * 129), ("actor", "a" * 129), ("causationid", "x" * 129), ("dataschema", "d" * 201),
    ("id", "bad\x00id"), ("actor", "client\n1"), ("source", "web\x7f"), ("correlationid", "\u0085"),
    ("type", "Send Offer"), ("traceparent", "t" * 513), ("x" * 21, "1"), ("ext", {"nested": "object"}),
])
def test_a_malformed_envelope_is_refused_when_it_is_parsed(attribute, value):
    with pytest.raises(ValidationError):
        Envelope.model_validate_json(envelope_with(**{attribute: value}))


def test_a_bounded_extension_attribute_is_kept():
    assert Envelope.model_validate_json(envelope_with(traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"))


def test_too_many_extension_attributes_are_refused():
    with pytest.raises(ValidationError):
        Envelope.model_validate_json(envelope_with(**{f"ext{i}": "v" for i in range(17)}))


@pytest.mark.parametrize("model,field,value", [
    (RegisterAccount, "name", "Ann\x00"), (RegisterAccount, "name", "Ann\nBell"), (RegisterAccount, "email", "a\x00@b.c"),
    (RegisterAccount, "name", "A" * 201), (GiveBonus, "note", "thanks\x00"), (GiveBonus, "note", "n" * 1001),
    (SubmitWork, "message", "done\x1b[31m"), (SubmitWork, "message", "m" * 5001),
])
def test_text_fields_refuse_control_characters_and_what_their_column_cannot_hold(model, field, value):
    valid = {RegisterAccount: dict(account_id="a-1", role="client", name="Ann", email="a@b.c"),
             GiveBonus: dict(contract_id="c-1", bonus_id="b-1", amount=500, note="thanks"),
             SubmitWork: dict(contract_id="c-1", milestone_id="m-1", message="done")}[model]
    model.model_validate(valid)
    with pytest.raises(ValidationError):
        model.model_validate({**valid, field: value})


def test_free_text_may_hold_line_breaks_and_tabs_but_titles_may_not():
    SubmitWork(contract_id="c-1", milestone_id="m-1", message="line one\n\tline two\r\n")
    with pytest.raises(ValidationError):
        MilestoneSpec(milestone_id="m-1", title="two\nlines", amount=500)


def test_an_offer_has_at_most_fifty_milestones():
    specs = [MilestoneSpec(milestone_id=f"m-{i}", title="M", amount=500) for i in range(51)]
    with pytest.raises(ValidationError):
        SendOffer(contract_id="c", client_id="a", freelancer_id="b", title="T", currency="USD", milestones=specs)


LIMITS = Limits(milestone_min=500, milestone_max=1_000, bonus_min=100, contract_max_total=2_500, bonus_max=700,
                bonus_max_per_client_per_day=1_000)


@pytest.mark.parametrize("check,args", [
    ("check_milestone", (2**62,)), ("check_milestone", (-(2**63),)), ("check_milestone", (1_001,)),
    ("check_bonus", (2**62,)), ("check_bonus", (701,)), ("check_bonus", (99,)), ("check_bonus", (600, 401)),
    ("check_contract", ([1_000, 1_000, 501],)), ("check_contract", ([2**62, 2**62],)),
])
def test_amounts_and_sums_outside_the_limits_are_refused_amount_out_of_range(check, args):
    with pytest.raises(Rejected) as refused:
        getattr(LIMITS, check)(*args)
    assert refused.value.reason_code == "amount_out_of_range"


def test_amounts_within_the_limits_pass():
    LIMITS.check_milestone(1_000)
    LIMITS.check_bonus(700, 300)
    LIMITS.check_contract([1_000, 1_000, 500])


def test_the_defaults_keep_every_sum_far_below_a_bigint():
    limits = Limits()
    assert 50 * limits.milestone_max <= limits.contract_max_total * 5 < 2**53
    assert 366 * limits.bonus_max_per_client_per_day < 2**53
