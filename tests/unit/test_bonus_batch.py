"""The daily bonus batch's pure rules: which bonuses it takes, one charge per client and currency, the amounts,
the credits asked of escrow, the summary, the schedule; and who may give a bonus on which contract."""

from datetime import date, datetime, time, timedelta, timezone

import pytest
from platform_runtime.errors import Rejected
from platform_runtime.settings import ServiceSettings
from platform_schemas.commands.saga import BonusToPost, PostBonuses
from platform_schemas.envelope import encode_new
from platform_schemas.events.escrow import BonusesPosted

from billing.domain import bonus_batch as batches
from billing.domain.bonus_batch import Bonus, ChargeResult
from contracts.domain import bonuses as contract_bonuses
from contracts.domain.contracts import ACTIVE, CANCELLED, ENDED, OFFERED, Contract
from contracts.domain.limits import Limits
from escrow.domain import ledger

pytestmark = pytest.mark.unit

DAY = date(2026, 11, 25)
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def bonus(n: int, client: str, currency: str = "USD", amount: int = 1000, contract: str | None = None,
          freelancer: str = "fl-1") -> Bonus:
    return Bonus(f"b-{n}", contract or f"c-{client}-{currency}", client, freelancer, amount, currency)


def merged(*chunks: list[batches.ChargeTotal]) -> dict[str, tuple[int, int]]:
    """What the charge rows hold after each chunk's sums were added to them (the collect step's upsert)."""
    rows: dict[str, tuple[int, int]] = {}
    for chunk in chunks:
        for t in chunk:
            amount, count = rows.get(t.charge_id, (0, 0))
            rows[t.charge_id] = (amount + t.amount, count + t.bonuses)
    return rows


# -- grouping and amounts -------------------------------------------------------------------------


def test_a_client_is_charged_once_per_currency_for_the_sum_of_its_bonuses_across_its_contracts():
    given = [
        bonus(1, "cl-a", "USD", 1000, "c-1"), bonus(2, "cl-a", "USD", 2500, "c-2"), bonus(3, "cl-a", "USD", 100, "c-1"),
        bonus(4, "cl-a", "EUR", 700, "c-3"), bonus(5, "cl-b", "USD", 999, "c-4"), bonus(6, "cl-a", "GBP", 150, "c-5"),
    ]
    charges = batches.group_charges(DAY, given)
    assert [(c.client_id, c.currency, c.amount, c.bonuses) for c in charges] == [
        ("cl-a", "EUR", 700, 1), ("cl-a", "GBP", 150, 1), ("cl-a", "USD", 3600, 3), ("cl-b", "USD", 999, 1)]
    assert sum(c.amount for c in charges) == sum(b.amount for b in given)


def test_each_charge_has_a_deterministic_short_id_and_an_idempotency_key_of_batch_client_and_currency():
    [charge] = batches.group_charges(DAY, [bonus(1, "cl-a", "EUR")])
    assert charge.idempotency_key == "bonus-batch-2026-11-25:cl-a:EUR"
    assert charge.charge_id == batches.charge_id(DAY, "cl-a", "EUR")
    long_client = "c" * 64
    ids = {batches.charge_id(d, c, cur) for d in (DAY, DAY + timedelta(days=1)) for c in ("cl-a", long_client)
           for cur in ("USD", "EUR")}
    assert len(ids) == 8 and all(len(i) <= 64 for i in ids)


def test_sums_of_chunks_added_together_equal_the_sums_of_the_whole_batch():
    given = [bonus(n, f"cl-{n % 7}", ("USD", "EUR", "GBP")[n % 3], 100 + n) for n in range(100)]
    whole = merged(batches.group_charges(DAY, given))
    assert merged(*(batches.group_charges(DAY, given[i:i + 13]) for i in range(0, 100, 13))) == whole
    assert sum(amount for amount, _ in whole.values()) == sum(b.amount for b in given)
    assert sum(count for _, count in whole.values()) == 100


def test_nothing_to_charge_on_an_empty_day_and_a_non_positive_bonus_is_a_bug():
    assert batches.group_charges(DAY, []) == []
    with pytest.raises(ValueError):
        batches.group_charges(DAY, [bonus(1, "cl-a", amount=0)])


# -- credits asked of escrow ----------------------------------------------------------------------


def test_charged_bonuses_are_asked_of_escrow_in_requests_of_at_most_the_limit_whatever_the_client():
    a, b = batches.charge_id(DAY, "cl-a", "USD"), batches.charge_id(DAY, "cl-b", "EUR")
    charged = [(a, bonus(n, "cl-a")) for n in range(4)] + [(b, bonus(10, "cl-b", "EUR"))]
    requests = batches.credit_requests(charged, limit=2)
    assert [[(charge, x.bonus_id) for charge, x in r] for r in requests] == [
        [(a, "b-0"), (a, "b-1")], [(a, "b-2"), (a, "b-3")], [(b, "b-10")]]
    assert batches.credit_requests([]) == []
    assert batches.MAX_BONUSES_PER_CREDIT <= 500  # PostBonuses' own limit


def test_a_full_credit_request_and_escrows_reply_fit_in_a_message_with_every_id_at_its_longest():
    longest = "x" * 64
    request = PostBonuses(business_date=DAY, bonuses=[
        BonusToPost(bonus_id=f"{n:064d}", contract_id=longest, client_id=longest, freelancer_id=longest,
                    amount=2**62, currency="USD", charge_id=longest) for n in range(batches.MAX_BONUSES_PER_CREDIT)])
    reply = BonusesPosted(business_date=DAY, bonus_ids=[b.bonus_id for b in request.bonuses],
                          available_at=datetime(2026, 12, 7, tzinfo=timezone.utc))
    for message in (request, reply):
        _, payload = encode_new(message, subject=longest, actor="system", source="billing")
        assert len(payload) <= ServiceSettings.model_fields["max_message_bytes"].default


def test_escrow_posts_a_bonus_from_the_gateway_through_the_client_to_the_freelancers_pending_account():
    postings = ledger.bonus(ledger.TransactionId("bonus", "b-1"), "cl-a", "fl-1", 2500, "EUR")
    assert ledger.balances(postings) == {ledger.gateway("EUR"): -2500, ledger.client("cl-a", "EUR"): 0,
                                         ledger.freelancer_pending("fl-1", "EUR"): 2500}


def test_history_shows_the_client_a_bonus_charge_and_the_freelancer_a_bonus_earning():
    rows = batches.history_rows(bonus(1, "cl-a", "GBP", 1234, "c-9", "fl-7"), "bc-1")
    assert [(r.account_id, r.kind, r.amount, r.currency, r.contract_id, r.bonus_id) for r in rows] == [
        ("cl-a", "bonus_charge", -1234, "GBP", "c-9", "b-1"), ("fl-7", "bonus_earning", 1234, "GBP", "c-9", "b-1")]
    long_bonus = Bonus("b" * 64, "c-1", "cl-a", "fl-1", 100, "USD")
    ids = [r.transaction_id for r in batches.history_rows(long_bonus, "bc-1")]
    assert len(set(ids)) == 2 and all(len(i) <= 64 for i in ids)


# -- the summary ----------------------------------------------------------------------------------


def test_the_summary_totals_only_what_was_charged_and_lists_each_declined_charge():
    summary = batches.summarize([
        ChargeResult("bc-1", "cl-a", "USD", 3600, 3, True),
        ChargeResult("bc-2", "cl-a", "EUR", 700, 1, True),
        ChargeResult("bc-3", "cl-b", "USD", 999, 2, False, "card_declined", "The card was declined."),
        ChargeResult("bc-4", "cl-c", "USD", 100, 1, True),
    ])
    assert summary.figures() == {
        "bonuses": 7, "paid": 5, "failed": 2, "totals": {"EUR": 700, "USD": 3700},
        "failures": [{"client_id": "cl-b", "currency": "USD", "charge_id": "bc-3", "reason_code": "card_declined",
                      "message": "The card was declined."}]}


def test_an_empty_batch_sums_to_nothing():
    assert batches.summarize([]).figures() == {"bonuses": 0, "paid": 0, "failed": 0, "totals": {}, "failures": []}


# -- which bonuses, and when ------------------------------------------------------------------------


def test_a_past_day_takes_what_was_given_before_its_end_and_an_early_run_what_was_given_before_now():
    assert batches.cutoff(DAY, NOON + timedelta(days=3)) == datetime(2026, 11, 26, tzinfo=timezone.utc)
    assert batches.cutoff(DAY, NOON) == NOON


def test_a_batch_is_run_by_an_administrator_or_the_system_for_today_or_earlier():
    batches.ensure_may_run("admin:ops", DAY, NOON)
    batches.ensure_may_run("system", DAY - timedelta(days=400), NOON)
    with pytest.raises(Rejected) as refused:
        batches.ensure_may_run("client-17", DAY, NOON)
    assert refused.value.reason_code == "forbidden"
    with pytest.raises(Rejected) as refused:
        batches.ensure_may_run("admin:ops", DAY + timedelta(days=1), NOON)
    assert refused.value.reason_code == "date_in_future"


@pytest.mark.parametrize(("now", "at", "expected"), [
    (datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc), time(0, 0), date(2026, 11, 25)),
    (datetime(2026, 11, 25, 0, 0, tzinfo=timezone.utc), time(0, 0), date(2026, 11, 25)),
    (datetime(2026, 11, 25, 5, 59, tzinfo=timezone.utc), time(6, 0), date(2026, 11, 24)),
    (datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc), time(6, 0), date(2026, 11, 25)),
])
def test_the_next_scheduled_batch_is_for_the_day_that_ends_before_the_next_run_time(now, at, expected):
    assert batches.next_scheduled(now, at) == expected
    assert batches.scheduled_at(expected, at) > now


def test_after_a_pause_the_schedule_resumes_from_the_day_after_the_last_one_scheduled():
    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    assert batches.first_to_schedule(now, time(0, 0), None) == date(2026, 11, 25)
    assert batches.first_to_schedule(now, time(0, 0), date(2026, 11, 20)) == date(2026, 11, 21)
    assert batches.first_to_schedule(now, time(0, 0), date(2026, 11, 25)) == date(2026, 11, 25)
    assert batches.first_to_schedule(now, time(0, 0), date(2026, 12, 25)) == date(2026, 11, 25)  # clock went back


def test_the_scheduled_batch_has_a_correlation_id_derived_from_its_date_and_a_batch_subject():
    assert batches.scheduled_correlation_id(DAY) == batches.scheduled_correlation_id(date(2026, 11, 25))
    assert batches.scheduled_correlation_id(DAY) != batches.scheduled_correlation_id(DAY + timedelta(days=1))
    assert batches.batch_subject(DAY) == "bonus-batch-2026-11-25"


# -- giving a bonus (contracts) ---------------------------------------------------------------------


def contract(status: str = ACTIVE, ended_at: datetime | None = None) -> Contract:
    return Contract("c-1", "cl-a", "fl-1", "Logo", "EUR", "first_milestone", status, ended_at=ended_at)


def give(on: Contract, actor: str = "cl-a", amount: int = 100, now: datetime = NOON):
    return contract_bonuses.give(on, actor, "b-1", amount, "Thanks", now, Limits(), timedelta(days=365))


def test_a_bonus_on_an_active_contract_is_recorded_pending_in_the_contracts_currency_and_utc_day():
    late_evening = datetime(2026, 11, 25, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    given = give(contract(), now=late_evening)
    assert (given.status, given.currency, given.freelancer_id, given.business_date) == (
        "pending", "EUR", "fl-1", date(2026, 11, 26))


def test_a_bonus_on_a_contract_ended_less_than_a_year_ago_is_allowed_not_later():
    assert give(contract(ENDED, NOON - timedelta(days=364))).status == "pending"
    for refused_on in (contract(ENDED, NOON - timedelta(days=365)), contract(OFFERED), contract(CANCELLED)):
        with pytest.raises(Rejected) as refused:
            give(refused_on)
        assert refused.value.reason_code == "invalid_state"


def test_only_the_client_gives_a_bonus_and_at_least_the_minimum():
    with pytest.raises(Rejected) as refused:
        give(contract(), actor="fl-1")
    assert refused.value.reason_code == "forbidden"
    with pytest.raises(Rejected) as refused:
        give(contract(), amount=99)
    assert refused.value.reason_code == "amount_out_of_range"


# -- charged once daily ----------------------------------------------------------------------------------
def test_a_batch_charges_on_the_utc_day_it_started_whatever_business_day_it_runs():
    scheduled = datetime(2026, 12, 2, 0, 0, 5, tzinfo=timezone.utc)  # the batch of Dec 1 at BONUS_BATCH_AT
    early = datetime(2026, 12, 2, 15, 0, tzinfo=timezone.utc)  # an operator runs Dec 2 itself early
    assert batches.charge_date(scheduled) == batches.charge_date(early) == date(2026, 12, 2)
    assert batches.charge_date(datetime(2026, 12, 2, 23, 30, tzinfo=timezone(-timedelta(hours=2)))) == date(2026, 12, 3)


# -- past-due balances -----------------------------------------------------------------------------------
def test_a_first_declined_bonus_charge_is_past_due_until_the_retry_days_are_over():
    assert batches.after_decline(None, date(2026, 12, 2), 7) == ("past_due", date(2026, 12, 9))


def test_a_past_due_bonus_declined_again_stays_past_due_until_its_last_retry_then_fails():
    until = date(2026, 12, 9)
    assert batches.after_decline(until, date(2026, 12, 8), 7) == ("past_due", until)
    assert batches.after_decline(until, date(2026, 12, 9), 7) == ("failed", until)  # the last retry


def test_with_no_retry_days_a_declined_bonus_fails_at_once():
    assert batches.after_decline(None, date(2026, 12, 2), 0) == ("failed", date(2026, 12, 2))


def test_a_client_with_a_past_due_balance_may_not_send_offers_or_give_bonuses_until_it_is_paid():
    from contracts.domain.accounts import Account

    client = Account("cl-1", "client", "Ann", "ann@example.test")
    client.ensure_nothing_past_due()
    client.owe("USD", 2_500)
    with pytest.raises(Rejected) as refused:
        client.ensure_nothing_past_due()
    assert refused.value.reason_code == "past_due_balance" and "2500 USD" in refused.value.message
    client.owe("EUR", 0)
    client.owe("USD", 0)
    assert client.past_due == {}
    client.ensure_nothing_past_due()


def test_an_older_past_due_word_arriving_after_a_newer_one_is_ignored_per_currency():
    from contracts.domain.accounts import Account

    client = Account("cl-1", "client", "Ann", "ann@example.test")
    assert client.owe("USD", 2_500, version=2)
    assert not client.owe("USD", 1_000, version=1)  # late: version 2 said 2,500 already
    assert not client.owe("USD", 1_000, version=2)  # the same word again changes nothing
    assert client.owe("EUR", 700, version=1)  # each currency counts its own versions
    assert client.past_due == {"USD": 2_500, "EUR": 700}
    assert client.owe("USD", 0, version=3)
    assert client.past_due == {"EUR": 700} and client.past_due_versions == {"USD": 3, "EUR": 1}
    assert client.owe("EUR", 0)  # a billing without versions: taken as is
    assert client.past_due == {}
