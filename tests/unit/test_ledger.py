"""The double-entry ledger (escrow/domain/ledger.py): postings balance, overdrafts are refused,
and the check recomputes everything from the postings, so it finds a wrong row."""

import pytest
from platform_runtime.errors import Rejected

from escrow.domain import ledger
from escrow.domain.ledger import Posting, TransactionId

pytestmark = pytest.mark.unit

ESCROW_M1 = ledger.escrow("c-1", "m-1", "USD")
ESCROW_M2 = ledger.escrow("c-1", "m-2", "USD")
CLIENT = ledger.client("client-1", "USD")
FREELANCER = ledger.freelancer("free-1", "USD")
PENDING = ledger.freelancer_pending("free-1", "USD")
GATEWAY = ledger.gateway("USD")


def funded(amounts=(50_000, 20_000)) -> list[Posting]:
    return ledger.fund(TransactionId(ledger.FUND, "hold-1"), "client-1", "USD", [("c-1", f"m-{i + 1}", a) for i, a in enumerate(amounts)])


def sums_to_zero(postings: list[Posting]) -> bool:
    return sum(ledger.balances(postings).values()) == 0


# -- postings of each kind ------------------------------------------------------------------


def test_funding_charges_the_client_then_moves_each_milestone_into_its_own_escrow_account():
    postings = funded()
    assert [(p.debit_account, p.credit_account, p.amount) for p in postings] == [
        (GATEWAY, CLIENT, 70_000), (CLIENT, ESCROW_M1, 50_000), (CLIENT, ESCROW_M2, 20_000)]
    assert ledger.balances(postings) == {GATEWAY: -70_000, CLIENT: 0, ESCROW_M1: 50_000, ESCROW_M2: 20_000}


def test_release_moves_escrow_to_the_client_and_on_to_the_freelancers_pending_account_in_one_transaction():
    postings = ledger.release(TransactionId(ledger.RELEASE, "rel-1"), "c-1", "m-1", "client-1", "free-1", 50_000, "USD")
    assert [(p.debit_account, p.credit_account) for p in postings] == [(ESCROW_M1, CLIENT), (CLIENT, PENDING)]
    assert ledger.balances(funded() + postings)[PENDING] == 50_000
    assert ledger.balances(funded() + postings)[ESCROW_M1] == 0


def test_refund_moves_escrow_back_through_the_client_to_the_gateway():
    postings = ledger.refund(TransactionId(ledger.REFUND, "ref-1"), "c-1", "m-2", "client-1", 20_000, "USD")
    assert [(p.debit_account, p.credit_account) for p in postings] == [(ESCROW_M2, CLIENT), (CLIENT, GATEWAY)]
    after = ledger.balances(funded() + postings)
    assert after[ESCROW_M2] == 0 and after[CLIENT] == 0 and after[GATEWAY] == -50_000


def test_a_bonus_is_charged_to_the_client_and_credited_to_the_freelancers_pending_account():
    postings = ledger.bonus(TransactionId(ledger.BONUS, "bonus-1"), "client-1", "free-1", 2_500, "USD")
    assert ledger.balances(postings) == {GATEWAY: -2_500, CLIENT: 0, PENDING: 2_500}


# -- the earnings security period ------------------------------------------------------------


def released() -> list[Posting]:
    return funded() + ledger.release(TransactionId(ledger.RELEASE, "rel-1"), "c-1", "m-1", "client-1", "free-1", 50_000, "USD")


def test_once_the_security_period_is_over_the_earning_moves_from_pending_to_available():
    after = ledger.balances(released() + ledger.make_available(TransactionId(ledger.AVAILABLE, "rel-1"), "free-1", 50_000, "USD"))
    assert after[PENDING] == 0 and after[FREELANCER] == 50_000


def test_a_release_refunded_inside_the_period_is_taken_from_pending_only():
    back = ledger.take_back(TransactionId(ledger.TAKE_BACK, "back-1"), "free-1", "client-1", 30_000, "USD", still_pending=50_000)
    assert [(p.debit_account, p.credit_account, p.amount) for p in back] == [(PENDING, CLIENT, 30_000)]
    assert ledger.balances(released() + back)[PENDING] == 20_000


def test_a_refund_larger_than_what_is_pending_takes_pending_first_then_the_available_balance():
    before = ledger.apply({}, released() + ledger.bonus(TransactionId(ledger.BONUS, "b-1"), "client-1", "free-1", 10_000, "USD")
                          + ledger.make_available(TransactionId(ledger.AVAILABLE, "b-1"), "free-1", 10_000, "USD"))
    back = ledger.take_back(TransactionId(ledger.TAKE_BACK, "back-1"), "free-1", "client-1", 55_000, "USD", still_pending=50_000)
    assert [(p.debit_account, p.amount) for p in back] == [(PENDING, 50_000), (FREELANCER, 5_000)]
    after = ledger.apply(before, back)
    assert after[PENDING] == 0 and after[FREELANCER] == 5_000


def test_a_refund_never_overdraws_the_freelancers_accounts():
    with pytest.raises(Rejected):
        ledger.apply(ledger.apply({}, released()),
                     ledger.take_back(TransactionId(ledger.TAKE_BACK, "back-1"), "free-1", "client-1", 50_001, "USD", still_pending=50_000))


def test_the_earnings_timer_becomes_due_after_the_security_period():
    from datetime import datetime, timedelta, timezone

    from escrow.domain import earnings

    now = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
    earning = earnings.released("rel-1", "release", "c-1", "free-1", 50_000, "USD", now, timedelta(days=5),
                                milestone_id="m-1")
    assert earning.available_at == datetime(2026, 12, 6, 10, tzinfo=timezone.utc)
    assert earnings.timer_id([earning]) == '["earnings_available","release","rel-1"]'


@pytest.mark.parametrize("postings", [
    funded(),
    ledger.release(TransactionId(ledger.RELEASE, "rel-1"), "c-1", "m-1", "client-1", "free-1", 50_000, "USD"),
    ledger.refund(TransactionId(ledger.REFUND, "ref-1"), "c-1", "m-1", "client-1", 50_000, "USD"),
    ledger.bonus(TransactionId(ledger.BONUS, "bonus-1"), "client-1", "free-1", 2_500, "USD"),
    ledger.make_available(TransactionId(ledger.AVAILABLE, "rel-1"), "free-1", 2_500, "USD"),
    ledger.take_back(TransactionId(ledger.TAKE_BACK, "back-1"), "free-1", "client-1", 2_500, "USD", still_pending=1_000),
], ids=["fund", "release", "refund", "bonus", "available", "take_back"])
def test_every_kind_of_ledger_transaction_balances_to_zero(postings):
    assert sums_to_zero(postings)


def test_posting_ids_are_derived_from_the_transaction_so_a_retried_step_writes_the_same_rows():
    assert [p.posting_id for p in funded()] == [p.posting_id for p in funded()]
    hold = TransactionId(ledger.FUND, "hold-1")
    assert [p.posting_id for p in funded()] == [hold.posting_id(leg) for leg in range(3)]
    assert len({p.posting_id for p in funded()}) == 3


# -- what a posting may be ------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, -1, 10.0, "100", True, None])
def test_a_posting_moves_a_positive_integer_amount_only(amount):
    with pytest.raises(ValueError):
        Posting("p-1", GATEWAY, CLIENT, amount, "USD")


def test_a_posting_moves_money_between_two_different_accounts():
    with pytest.raises(ValueError):
        Posting("p-1", CLIENT, CLIENT, 100, "USD")


# -- apply: running balances ----------------------------------------------------------------


def test_apply_returns_the_new_balances_of_the_touched_accounts():
    assert ledger.apply({}, funded()) == {GATEWAY: -70_000, CLIENT: 0, ESCROW_M1: 50_000, ESCROW_M2: 20_000}


def test_apply_refuses_a_release_of_more_than_the_escrow_holds():
    current = ledger.apply({}, funded())
    with pytest.raises(Rejected) as refused:
        ledger.apply(current, ledger.release(TransactionId(ledger.RELEASE, "rel-1"), "c-1", "m-1", "client-1", "free-1", 50_001, "USD"))
    assert refused.value.reason_code == "insufficient_funds"
    assert str(ESCROW_M1) in refused.value.message


def test_apply_refuses_a_refund_from_an_empty_escrow():
    with pytest.raises(Rejected):
        ledger.apply({}, ledger.refund(TransactionId(ledger.REFUND, "ref-1"), "c-1", "m-9", "client-1", 100, "USD"))


def test_apply_leaves_the_current_balances_untouched_when_it_refuses():
    current = ledger.apply({}, funded())
    before = dict(current)
    with pytest.raises(Rejected):
        ledger.apply(current, ledger.release(TransactionId(ledger.RELEASE, "rel-1"), "c-1", "m-2", "client-1", "free-1", 99_999, "USD"))
    assert current == before


def test_only_the_gateway_account_may_go_below_zero():
    assert GATEWAY.may_go_negative
    assert not any(a.may_go_negative for a in (CLIENT, FREELANCER, PENDING, ESCROW_M1))


# -- check: everything recomputed from the postings -----------------------------------------


def healthy_ledger():
    postings = funded() + ledger.release(TransactionId(ledger.RELEASE, "rel-1"), "c-1", "m-1", "client-1", "free-1", 50_000, "USD")
    stored = ledger.balances(postings)
    held = {ESCROW_M1: 0, ESCROW_M2: 20_000}
    return postings, stored, held


def test_check_finds_nothing_wrong_in_a_healthy_ledger():
    assert ledger.check(*healthy_ledger()) == []


def test_check_finds_a_stored_balance_that_differs_from_the_postings():
    postings, stored, held = healthy_ledger()
    stored[PENDING] += 1
    problems = ledger.check(postings, stored, held)
    assert problems == [f"{PENDING}: postings say 50000, stored balance says 50001"]


def test_check_finds_a_stored_balance_with_no_postings_behind_it():
    postings, stored, held = healthy_ledger()
    stored[ledger.freelancer("ghost", "USD")] = 100
    assert any("freelancer:ghost:USD" in p for p in ledger.check(postings, stored, held))


def test_check_finds_a_milestone_holding_that_disagrees_with_its_escrow_account():
    postings, stored, held = healthy_ledger()
    held[ESCROW_M2] = 25_000
    assert ledger.check(postings, stored, held) == [f"{ESCROW_M2}: holds 20000 but milestones hold 25000"]


def test_check_finds_a_posting_row_whose_amount_was_changed():
    postings, stored, held = healthy_ledger()
    # A row edited in the database: the escrow leg of m-2 now says 15,000 instead of 20,000.
    edited = [Posting(p.posting_id, p.debit_account, p.credit_account, 15_000, p.currency)
              if p.posting_id == TransactionId(ledger.FUND, "hold-1").posting_id(2) else p for p in postings]
    problems = ledger.check(edited, stored, held)
    assert f"{CLIENT}: postings say 5000, stored balance says 0" in problems
    assert f"{ESCROW_M2}: holds 15000 but milestones hold 20000" in problems


def test_check_finds_an_account_driven_negative_by_a_lost_posting():
    postings, stored, held = healthy_ledger()
    without_the_charge = [p for p in postings if p.posting_id != TransactionId(ledger.FUND, "hold-1").posting_id(0)]
    problems = ledger.check(without_the_charge, stored, held)
    assert f"{CLIENT} is negative: -70000" in problems


def test_check_finds_a_row_with_a_non_positive_amount():
    postings, stored, held = healthy_ledger()
    bad = object.__new__(Posting)  # bypasses validation, as a row read back from a tampered table would
    for name, value in dict(posting_id="bad-1", debit_account=CLIENT, credit_account=FREELANCER, amount=-5,
                            currency="USD").items():
        object.__setattr__(bad, name, value)
    problems = ledger.check([*postings, bad], stored, held)
    assert "posting bad-1 has a non-positive amount -5" in problems


def test_check_keeps_currencies_apart():
    usd = funded()
    eur = ledger.fund(TransactionId(ledger.FUND, "hold-2"), "client-1", "EUR", [("c-2", "m-3", 10_000)])
    postings = usd + eur
    assert ledger.check(postings, ledger.balances(postings), {ESCROW_M1: 50_000, ESCROW_M2: 20_000,
                                                              ledger.escrow("c-2", "m-3", "EUR"): 10_000}) == []
    assert ledger.client("client-1", "EUR") != CLIENT


def test_money_leaves_a_milestones_escrow_only_up_to_what_it_holds():
    from platform_runtime.errors import Rejected

    ledger.ensure_held(500, 500, "m-1")
    with pytest.raises(Rejected) as refused:
        ledger.ensure_held(499, 500, "m-1")
    assert refused.value.reason_code == "invalid_state"


def test_check_compares_each_pending_account_with_the_earnings_still_inside_their_period():
    postings, stored, held = healthy_ledger()
    assert ledger.check(postings, stored, held, {PENDING: 50_000}) == []
    assert ledger.check(postings, stored, held, {PENDING: 40_000}) == [
        f"{PENDING}: holds 50000 but earnings still pending add up to 40000"]
    assert ledger.check(postings, stored, held, {}) == [
        f"{PENDING}: holds 50000 but earnings still pending add up to 0"]


def test_check_finds_a_pending_account_below_zero():
    postings = released() + ledger.make_available(TransactionId(ledger.AVAILABLE, "rel-1"), "free-1", 50_000, "USD") \
        + ledger.make_available(TransactionId(ledger.AVAILABLE, "rel-2"), "free-1", 10, "USD")
    problems = ledger.check(postings, ledger.balances(postings), {ESCROW_M1: 0, ESCROW_M2: 20_000}, {})
    assert f"{PENDING} is negative: -10" in problems


def test_account_names_on_the_wire_keep_caller_ids_apart_even_when_they_hold_colons():
    assert str(ledger.client("client-1", "USD")) == "client:client-1:USD"
    assert str(ledger.freelancer_pending("fl-1", "USD")) == "freelancer_pending:fl-1:USD"
    assert str(ledger.escrow("a:b", "c", "USD")) != str(ledger.escrow("a", "b:c", "USD"))
    assert ledger.escrow("a:b", "c", "USD") != ledger.escrow("a", "b:c", "USD")
