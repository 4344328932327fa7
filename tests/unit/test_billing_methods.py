"""Billing methods (billing/domain/billing_methods.py): one is primary, every charge goes to the primary."""

import pytest
from platform_runtime.errors import Rejected

from billing.domain import history
from billing.domain.billing_methods import BillingMethod, BillingMethods

pytestmark = pytest.mark.unit


def card(method_id: str, token: str = "tok_visa") -> BillingMethod:
    return BillingMethod(method_id, "card", token)


def wallet(*ids: str) -> BillingMethods:
    methods = BillingMethods("client-1")
    for method_id in ids:
        methods.add(card(method_id), make_primary=False)
    return methods


def primary_id(methods: BillingMethods) -> str | None:
    primary = methods.primary()
    return primary.billing_method_id if primary else None


def test_an_account_without_billing_methods_has_no_primary():
    assert BillingMethods("client-1").primary() is None


def test_the_first_method_becomes_primary_by_itself():
    assert primary_id(wallet("card-1")) == "card-1"


def test_a_later_method_does_not_take_the_primary_unless_asked():
    assert primary_id(wallet("card-1", "card-2")) == "card-1"


def test_a_later_method_added_as_primary_takes_over_the_primary():
    methods = wallet("card-1")
    methods.add(BillingMethod("paypal-1", "paypal", "tok_visa"), make_primary=True)
    assert primary_id(methods) == "paypal-1"


def test_there_is_never_more_than_one_primary():
    methods = wallet("card-1", "card-2", "card-3")
    methods.set_primary("card-3")
    methods.add(card("card-4"), make_primary=True)
    methods.set_primary("card-2")
    assert [m.billing_method_id for m in methods.methods if m.primary] == ["card-2"]


def test_setting_the_primary_returns_the_previous_one():
    methods = wallet("card-1", "card-2")
    assert methods.set_primary("card-2") == "card-1"
    assert primary_id(methods) == "card-2"


def test_setting_an_unknown_method_as_primary_is_refused_as_not_found():
    with pytest.raises(Rejected) as refused:
        wallet("card-1").set_primary("card-9")
    assert refused.value.reason_code == "not_found"


def test_a_method_that_is_not_primary_can_be_removed():
    methods = wallet("card-1", "card-2")
    methods.remove("card-2")
    assert [m.billing_method_id for m in methods.methods] == ["card-1"]
    assert primary_id(methods) == "card-1"


def test_the_primary_cannot_be_removed_while_other_methods_remain():
    methods = wallet("card-1", "card-2")
    with pytest.raises(Rejected) as refused:
        methods.remove("card-1")
    assert refused.value.reason_code == "invalid_state"
    assert primary_id(methods) == "card-1"


def test_the_last_method_can_be_removed_and_leaves_no_primary():
    methods = wallet("card-1")
    methods.remove("card-1")
    assert methods.primary() is None


def test_removing_an_unknown_method_is_refused_as_not_found():
    with pytest.raises(Rejected) as refused:
        wallet("card-1").remove("card-9")
    assert refused.value.reason_code == "not_found"


# -- what a charge looks like in the client's transaction history ------------------------------


def test_a_fixed_price_charge_is_money_leaving_the_client():
    row = history.fixed_price_charge("fund-1:charge", "client-1", "c-1", ["m-1"], 50_000, "USD")
    assert (row.kind, row.amount, row.currency, row.account_id) == ("fixed_price_charge", -50_000, "USD", "client-1")
    assert (row.contract_id, row.milestone_id) == ("c-1", "m-1")
    assert "c-1" in row.description and "m-1" in row.description


def test_a_charge_for_several_milestones_names_them_all_but_no_single_milestone():
    row = history.fixed_price_charge("fund-1:charge", "client-1", "c-1", ["m-1", "m-2"], 70_000, "USD")
    assert row.milestone_id is None
    assert "m-1, m-2" in row.description


def test_a_refund_is_money_coming_back_to_the_client():
    row = history.refund("fund-1:compensate", "client-1", "c-1", None, 50_000, "USD")
    assert (row.kind, row.amount) == ("refund", 50_000)
