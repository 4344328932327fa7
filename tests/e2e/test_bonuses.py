"""Bonuses and the daily bonus batch saga end to end: contracts, billing, escrow as processes on real Kafka and
PostgreSQL. A normal day with a declined client among others, a re-run, an empty day, two runs at once in two
billing instances, and billing killed in the middle of a batch; the ledger check is clean after each.

A business day has one batch, so each test runs its own day: billing runs here with its clock 30 days ahead,
which makes the next 29 days past business days of billing's (RunBonusBatch for any of them takes every
bonus still pending) and the 30th its today (an early run); its own schedule is off (BONUS_BATCH_AT=off) until
the last test, which moves the clock further and turns the schedule on.
"""

import asyncio
import itertools
import signal
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import asyncpg
import pytest
import pytest_asyncio

from billing.domain import bonus_batch
from platform_runtime.client import PlatformClient, new_id
from platform_schemas import Envelope
from platform_schemas.commands.billing import RunBonusBatch
from platform_schemas.commands.contracts import AcceptOffer, GiveBonus, SuspendAccount
from tests.support.checks import gateway_fault, gateway_fault_over, query
from tests.support.polling import eventually
from tests.support.ports import free_port
from tests.support.story import offer as offer_of
from tests.support.story import Parties, add_card, parties, send_offer

pytestmark = pytest.mark.e2e

AHEAD_DAYS = 30
BILLING = "billing#0"
# Small chunks, so that a batch of a hundred bonuses is many transactions (a crash lands in the middle).
# No scheduled batches: moving the clock 30 days ahead would otherwise run the 30 "missed" days at once.
BATCH_ENV = {"CLOCK_OFFSET": f"P{AHEAD_DAYS}D", "BONUS_BATCH_AT": "off", "BONUS_BATCH_CHARGE_CHUNK": "2",
             "BONUS_BATCH_CREDIT_CHUNK": "4", "BONUS_BATCH_POLL": "0.1", "PAST_DUE_RETRY_DAYS": "0"}
_days = itertools.count(1)


def next_business_day() -> date:
    """A day of its own for a test's batch: past for billing, so its batch takes every pending bonus."""
    return datetime.now(timezone.utc).date() + timedelta(days=next(_days))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def batch_platform(platform, client):
    saved = dict(platform.env)
    platform.env.update(BATCH_ENV)
    await platform.restart(BILLING, signal.SIGTERM)
    yield platform
    platform.env.clear()
    platform.env.update(saved)
    for name in [n for n in platform.procs if n.startswith("billing#") and n != BILLING]:
        platform.kill(name, signal.SIGTERM)
    await platform.restart(BILLING, signal.SIGTERM)


# -- the story's steps -------------------------------------------------------------------------------


async def command(client: PlatformClient, data, subject: str, actor: str, outcomes: set[str],
                  timeout: float = 120) -> Envelope:
    """Generous: a hundred commands at once on a loaded two-core machine can take a while; success is fast."""
    sent = await client.send(data, subject=subject, actor=actor)
    return await client.outcome(sent, outcomes, timeout)


async def hired(client: PlatformClient, people: Parties, currency: str = "USD") -> str:
    """An active contract between them (its first milestone funded)."""
    sent, outcome = await send_offer(client, people, currency=currency, amounts=(10_000,))
    assert outcome.type == "OfferSent", outcome.data
    contract_id = sent.data["contract_id"]
    started = await command(client, AcceptOffer(contract_id=contract_id), contract_id, people.freelancer_id,
                            {"ContractStarted"})
    assert started.type == "ContractStarted", started.data
    return contract_id


async def give(client: PlatformClient, client_id: str, contract_id: str, amount: int) -> str:
    bonus_id = new_id("bonus")
    given = await command(client, GiveBonus(contract_id=contract_id, bonus_id=bonus_id, amount=amount, note="Thanks!"),
                          contract_id, client_id, {"BonusGiven"})
    assert given.type == "BonusGiven", given.data
    return bonus_id


async def known_to_billing(client: PlatformClient, bonus_ids: list[str], timeout: float = 30) -> None:
    """Billing learns bonuses from contracts' events; a batch takes only what it knows."""
    deadline = time.monotonic() + timeout
    for bonus_id in bonus_ids:
        while (await client.get("billing", f"/bonuses/{bonus_id}")).status_code != 200:
            assert time.monotonic() < deadline, f"billing never learnt of bonus {bonus_id}"
            await asyncio.sleep(0.05)


async def run_batch(client: PlatformClient, day: date, actor: str = "admin:ops") -> Envelope:
    return await client.send(RunBonusBatch(business_date=day), subject=f"bonus-batch-{day}", actor=actor)


async def completed(client: PlatformClient, sent: Envelope, timeout: float = 60) -> Envelope:
    outcome = await client.outcome(sent, {"BonusBatchCompleted"}, timeout)
    assert outcome.type == "BonusBatchCompleted", outcome.data
    assert outcome.subject == sent.subject
    return outcome


def outcomes_of(client: PlatformClient, day: date) -> tuple[dict[str, Envelope], dict[str, Envelope]]:
    """The day's BonusPaid and BonusFailed events by bonus id; a bonus is never both, nor told twice."""
    paid = [e for e in client.of_type("BonusPaid", business_date=day.isoformat())]
    failed = [e for e in client.of_type("BonusFailed", business_date=day.isoformat())]
    distinct = {e.id: e for e in paid + failed}.values()  # a relay may publish an event again, same id
    assert max(Counter(e.data["bonus_id"] for e in distinct).values(), default=1) == 1
    return ({e.data["bonus_id"]: e for e in paid}, {e.data["bonus_id"]: e for e in failed})


async def assert_figures_match_events(client: PlatformClient, day: date, figures: dict, timeout: float = 30) -> None:
    """The batch's figures count the day's outcome events. Those travel under each contract's key and the figures
    (BonusBatchCompleted) under the batch's, on other partitions: the client may read the figures first, so it
    waits for as many outcomes as they count, then compares."""
    await eventually(lambda: sum(map(len, outcomes_of(client, day))) >= figures["bonuses"], timeout,
                     f"the {figures['bonuses']} outcome events of the batch of {day}")
    paid, failed = outcomes_of(client, day)
    totals: dict[str, int] = {}
    for e in paid.values():
        totals[e.data["currency"]] = totals.get(e.data["currency"], 0) + e.data["amount"]
    assert (figures["paid"], figures["failed"], figures["bonuses"]) == (len(paid), len(failed), len(paid) + len(failed))
    assert figures["totals"] == totals


async def gateway_charges(platform, day: date) -> dict[str, int]:
    """What the payment network holds for the day's batch: idempotency key -> amount charged."""
    conn = await asyncpg.connect(platform.database_url("gateway").replace("+asyncpg", ""))
    try:
        rows = await conn.fetch("SELECT idempotency_key, amount FROM sim_charges WHERE idempotency_key LIKE $1",
                                f"bonus-batch-{day}:%")
    finally:
        await conn.close()
    return {r["idempotency_key"]: r["amount"] for r in rows}


async def credited(platform, freelancer_id: str, currency: str = "USD") -> int:
    """The freelancer's balance on escrow's ledger, pending and available together."""
    conn = await asyncpg.connect(platform.database_url("escrow").replace("+asyncpg", ""))
    try:
        return await conn.fetchval(
            "SELECT coalesce(sum(balance), 0) FROM account_balances WHERE kind IN ('freelancer', 'freelancer_pending')"
            " AND owner_id = $1 AND sub_id = '' AND currency = $2", freelancer_id, currency)
    finally:
        await conn.close()


async def ledger_is_clean(client: PlatformClient) -> None:
    check = await client.get_json("escrow", "/ledger/check")
    assert check["ok"], check["problems"]


# -- the tests -------------------------------------------------------------------------------------------


async def test_bonuses_are_refused_on_bad_terms_and_a_batch_for_a_future_day_or_by_a_client(client, batch_platform):
    people = await parties(client)
    contract_id = await hired(client, people)

    async def refused(amount: int, actor: str, on: str = contract_id) -> str:
        outcome = await command(client, GiveBonus(contract_id=on, bonus_id=new_id("bonus"), amount=amount,
                                                  note="Thanks"), on, actor, {"BonusGiven"})
        assert outcome.type == "CommandRejected", outcome.data
        return outcome.data["reason_code"]

    assert await refused(99, people.client_id) == "amount_out_of_range"
    assert await refused(500, people.freelancer_id) == "forbidden"
    assert await refused(500, people.client_id, on=new_id("contract")) == "not_found"
    suspended = await command(client, SuspendAccount(account_id=people.client_id, reason="chargebacks",
                                                     appealable=True), people.client_id, "admin:tests",
                              {"AccountSuspended"})
    assert suspended.type == "AccountSuspended"
    assert await refused(500, people.client_id) == "account_not_active"

    billing_today = datetime.now(timezone.utc).date() + timedelta(days=AHEAD_DAYS)
    for day, actor, reason in ((billing_today + timedelta(days=1), "admin:ops", "date_in_future"),
                               (billing_today, people.client_id, "forbidden")):
        outcome = await client.outcome(await run_batch(client, day, actor), {"BonusBatchCompleted"})
        assert (outcome.type, outcome.data["reason_code"]) == ("CommandRejected", reason)
    assert (await client.get("billing", f"/bonus-batches/{billing_today}")).status_code == 404


async def test_a_day_charges_each_client_once_per_currency_fails_only_the_declined_client_and_reruns_unchanged(
        client, batch_platform):
    # Ann gives bonuses on two USD contracts and one EUR contract; Bob on one; Cat's card now declines.
    ann, bob, cat = await asyncio.gather(parties(client), parties(client), parties(client))
    ann_second = Parties(ann.client_id, (await parties(client, token=None)).freelancer_id)
    ann_usd, ann_usd_2, ann_eur, bob_usd, cat_usd = await asyncio.gather(
        hired(client, ann), hired(client, ann_second), hired(client, ann, "EUR"), hired(client, bob),
        hired(client, cat))
    await add_card(client, cat.client_id, "tok_chargeDeclined")
    plan = [(ann, ann_usd, 1_000), (ann, ann_usd, 2_500), (ann_second, ann_usd_2, 700), (ann, ann_eur, 1_500),
            (bob, bob_usd, 3_000), (cat, cat_usd, 1_200), (cat, cat_usd, 800)]
    bonus_ids = await asyncio.gather(*(give(client, p.client_id, c, amount) for p, c, amount in plan))
    await known_to_billing(client, bonus_ids)
    contract = await client.get_json("contracts", f"/contracts/{ann_usd}")
    assert sorted((b["bonus_id"], b["amount"], b["status"]) for b in contract["bonuses"]) == sorted(
        [(bonus_ids[0], 1_000, "pending"), (bonus_ids[1], 2_500, "pending")])

    day = next_business_day()
    sent = await run_batch(client, day)
    done = await completed(client, sent)
    started = await client.wait_for(lambda e: e.type == "BonusBatchStarted" and e.data["business_date"] == str(day))
    assert started.correlationid == sent.id and started.data["bonuses"] == done.data["bonuses"]
    await assert_figures_match_events(client, day, done.data)

    paid, failed = outcomes_of(client, day)
    assert set(bonus_ids[:5]) <= set(paid) and set(bonus_ids[5:]) <= set(failed)
    assert {failed[b].data["reason_code"] for b in bonus_ids[5:]} == {"card_declined"}
    assert {f["client_id"]: f["reason_code"] for f in done.data["failures"]}[cat.client_id] == "card_declined"
    assert {paid[b].data["charge_id"] for b in bonus_ids[:3]} == {paid[bonus_ids[0]].data["charge_id"]}
    # Cat's declined charge is a failed charge like any other, caused by the batch.
    declined = await client.wait_for(lambda e: e.type == "ChargeFailed" and e.data["client_id"] == cat.client_id)
    assert (declined.subject, declined.correlationid, declined.causationid) == (cat.client_id, sent.id, sent.id)
    assert {k: declined.data[k] for k in ("saga_id", "purpose", "business_date", "bonuses", "amount", "reason_code",
                                         "consecutive_failures")} == {
        "saga_id": f"bonus-batch-{day}", "purpose": "bonus", "business_date": str(day), "bonuses": 2,
        "amount": 2_000, "reason_code": "card_declined", "consecutive_failures": 1}
    assert "contract_id" not in declined.data or declined.data["contract_id"] is None
    charges = await gateway_charges(batch_platform, day)
    assert {k: v for k, v in charges.items() if any(p.client_id in k for p in (ann, bob, cat))} == {
        f"bonus-batch-{day}:{ann.client_id}:USD": 4_200, f"bonus-batch-{day}:{ann.client_id}:EUR": 1_500,
        f"bonus-batch-{day}:{bob.client_id}:USD": 3_000}
    assert await credited(batch_platform, ann.freelancer_id) == 3_500
    assert await credited(batch_platform, ann.freelancer_id, "EUR") == 1_500
    assert await credited(batch_platform, ann_second.freelancer_id) == 700
    assert await credited(batch_platform, cat.freelancer_id) == 0
    history = await client.get_json("billing", f"/accounts/{ann.client_id}/transactions?kind=bonus_charge")
    assert sorted((t["amount"], t["currency"]) for t in history["items"]) == [
        (-2_500, "USD"), (-1_500, "EUR"), (-1_000, "USD"), (-700, "USD")]
    earnings = await client.get_json("billing", f"/accounts/{ann.freelancer_id}/transactions?kind=bonus_earning")
    assert sorted(t["amount"] for t in earnings["items"]) == [1_000, 1_500, 2_500]
    # When each becomes available (escrow's clock: billing's runs 30 days ahead here, so not comparable).
    assert all(t["available_at"] for t in earnings["items"])
    assert (await client.get_json("billing", f"/accounts/{cat.freelancer_id}/transactions?kind=bonus_earning")
            )["items"] == []
    batch = await client.get_json("billing", f"/bonus-batches/{day}")
    assert {k: batch[k] for k in ("business_date", "status", "bonuses", "paid", "failed", "totals")} == {
        "business_date": str(day), "status": "completed",
        **{k: done.data[k] for k in ("bonuses", "paid", "failed", "totals")}}
    await ledger_is_clean(client)

    async def settled_on_contract() -> list[str]:
        return [b["status"] for b in (await client.get_json("contracts", f"/contracts/{cat_usd}"))["bonuses"]]
    deadline = time.monotonic() + 30
    while await settled_on_contract() != ["failed", "failed"]:
        assert time.monotonic() < deadline, await settled_on_contract()
        await asyncio.sleep(0.1)

    # The same day again: the same figures, nobody charged, credited or told anything new.
    events_before = len(client.events)
    # (`system` runs the scheduled batch inside billing; from billing.commands it is forbidden.)
    refused = await client.outcome(await run_batch(client, day, actor="system"), {"BonusBatchCompleted"})
    assert (refused.type, refused.data["reason_code"]) == ("CommandRejected", "forbidden")
    again = await completed(client, await run_batch(client, day, actor="admin:another"))
    assert again.data == done.data
    assert await gateway_charges(batch_platform, day) == charges
    await asyncio.sleep(0.5)  # the rerun's answer came; nothing else of that day may follow it
    assert [e.type for e in client.events[events_before:] if e.data.get("business_date") == str(day)] == [
        "BonusBatchCompleted"]
    await ledger_is_clean(client)


async def test_a_declined_bonus_charge_counts_in_the_failed_charge_streak_and_suspends_the_client(
        client, batch_platform):
    people = await parties(client)
    contract_id = await hired(client, people)
    bonus_id = await give(client, people.client_id, contract_id, 1_000)
    await known_to_billing(client, [bonus_id])
    await add_card(client, people.client_id, "tok_chargeDeclined")
    for _ in range(4):  # four failed fund charges, then the batch's declined charge is the fifth
        _, outcome = await send_offer(client, people, amounts=(10_000,))
        assert (outcome.type, outcome.data["reason_code"]) == ("OfferFundingFailed", "card_declined")
    day = next_business_day()
    await completed(client, await run_batch(client, day))
    declined = await client.wait_for(lambda e: e.type == "ChargeFailed" and e.data["client_id"] == people.client_id
                                     and e.data["purpose"] == "bonus")
    assert declined.data["consecutive_failures"] == 5
    suspended = await client.wait_for(lambda e: e.type == "AccountSuspended"
                                      and e.data["account_id"] == people.client_id)
    assert (suspended.actor, suspended.data["automatic"], suspended.causationid) == ("system", True, declined.id)
    assert (await client.get_json("contracts", f"/accounts/{people.client_id}"))["status"] == "suspended"


async def test_an_empty_day_completes_with_nothing_charged(client, batch_platform):
    day = date(2020, 1, 31)  # long before any bonus of this platform was given
    done = await completed(client, await run_batch(client, day))
    assert {k: done.data[k] for k in ("bonuses", "paid", "failed", "totals", "failures")} == {
        "bonuses": 0, "paid": 0, "failed": 0, "totals": {}, "failures": []}
    assert await gateway_charges(batch_platform, day) == {}
    assert (await client.get_json("billing", f"/bonus-batches/{day}"))["status"] == "completed"
    await ledger_is_clean(client)


async def many_bonuses(client: PlatformClient, clients: int, per_client: int) -> tuple[list[Parties], list[str]]:
    """`clients` clients, each with a contract and `per_client` bonuses of 1.00 + n cents on it."""
    people = await asyncio.gather(*(parties(client) for _ in range(clients)))
    contracts = await asyncio.gather(*(hired(client, p) for p in people))
    bonus_ids = await asyncio.gather(*(give(client, p.client_id, c, 100 + n) for p, c in zip(people, contracts)
                                       for n in range(per_client)))
    await known_to_billing(client, bonus_ids)
    return people, bonus_ids


async def test_two_runs_at_once_in_two_billing_instances_charge_and_credit_each_client_once(client, batch_platform):
    people, bonus_ids = await many_bonuses(client, clients=6, per_client=5)
    second = batch_platform.start("billing", instance="1", port=free_port())
    await batch_platform.wait_ready(second)
    try:
        day = next_business_day()
        first, other = await asyncio.gather(run_batch(client, day), run_batch(client, day, actor="admin:other"))
        one, two = await asyncio.gather(completed(client, first), completed(client, other))
    finally:
        batch_platform.kill(second, signal.SIGTERM)
    assert one.data == two.data and one.correlationid == first.id and two.correlationid == other.id
    await assert_figures_match_events(client, day, one.data)
    paid, _ = outcomes_of(client, day)
    assert set(bonus_ids) <= set(paid)
    charges = await gateway_charges(batch_platform, day)
    for p in people:
        assert charges[f"bonus-batch-{day}:{p.client_id}:USD"] == sum(100 + n for n in range(5))
        assert await credited(batch_platform, p.freelancer_id) == sum(100 + n for n in range(5))
    await ledger_is_clean(client)


@pytest.mark.crash
async def test_billing_killed_in_the_middle_of_a_batch_finishes_it_after_restart_charging_nobody_twice(
        client, batch_platform):
    people, bonus_ids = await many_bonuses(client, clients=12, per_client=10)
    day = next_business_day()
    sent = await run_batch(client, day)
    deadline = time.monotonic() + 60
    while True:  # wait for the batch to be under way, then kill billing without warning
        response = await client.get("billing", f"/bonus-batches/{day}")
        if response.status_code == 200 and response.json()["status"] == "charging":
            batch = response.json()
            if 0 < batch["processed"] or batch["by_status"].get("taken", 0) < batch["bonuses"]:
                break
        assert time.monotonic() < deadline, "the batch never got under way"
        await asyncio.sleep(0.01)
    batch_platform.kill(BILLING, signal.SIGKILL)
    assert batch["processed"] < batch["bonuses"], f"the batch finished before the kill: {batch}"
    await batch_platform.restart(BILLING)

    done = await completed(client, sent, timeout=90)
    await assert_figures_match_events(client, day, done.data)
    paid, failed = outcomes_of(client, day)
    assert set(bonus_ids) <= set(paid) and not set(bonus_ids) & set(failed)
    charges = await gateway_charges(batch_platform, day)
    expected = sum(100 + n for n in range(10))
    for p in people:
        assert charges[f"bonus-batch-{day}:{p.client_id}:USD"] == expected
        assert await credited(batch_platform, p.freelancer_id) == expected
        earnings = await client.get_json("billing", f"/accounts/{p.freelancer_id}/transactions?kind=bonus_earning")
        assert len(earnings["items"]) == 10
    await ledger_is_clean(client)


async def test_an_early_run_of_billings_today_takes_what_was_given_so_far(client, batch_platform):
    people, bonus_ids = await many_bonuses(client, clients=1, per_client=2)
    today = datetime.now(timezone.utc).date() + timedelta(days=AHEAD_DAYS)  # billing's today
    done = await completed(client, await run_batch(client, today))
    paid, _ = outcomes_of(client, today)
    assert set(bonus_ids) <= set(paid)
    batch = await client.get_json("billing", f"/bonus-batches/{today}")
    assert batch["cutoff"] < f"{today + timedelta(days=1)}T00:00:00Z"  # now, not the end of the day
    assert batch["paid"] == done.data["paid"]
    await ledger_is_clean(client)


async def test_a_client_is_charged_for_bonuses_once_a_day_and_a_second_run_that_day_waits_for_the_next_days_charge(
        client, batch_platform):
    people = await parties(client)
    contract_id = await hired(client, people)
    first = await give(client, people.client_id, contract_id, 1_000)
    await known_to_billing(client, [first])
    day_one = next_business_day()
    await completed(client, await run_batch(client, day_one))
    assert set(outcomes_of(client, day_one)[0]) == {first}

    # Another business day run on the same UTC day (billing's), as an operator catching up would: the client
    # was charged today already, so its new bonus is left pending, uncharged, for a batch of another day.
    second = await give(client, people.client_id, contract_id, 700)
    await known_to_billing(client, [second])
    day_two = next_business_day()
    done = await completed(client, await run_batch(client, day_two))
    assert second not in {**outcomes_of(client, day_two)[0], **outcomes_of(client, day_two)[1]}
    assert not any(people.client_id in key for key in await gateway_charges(batch_platform, day_two))
    assert (await client.get_json("billing", f"/bonuses/{second}"))["status"] == "pending"
    assert done.data["failed"] == 0

    # Billing's next calendar day: the next batch takes it and charges it.
    batch_platform.env.update(CLOCK_OFFSET=f"P{AHEAD_DAYS + 1}D")
    await batch_platform.restart(BILLING, signal.SIGTERM)
    day_three = next_business_day()
    await completed(client, await run_batch(client, day_three))
    assert second in outcomes_of(client, day_three)[0]
    assert (await gateway_charges(batch_platform, day_three))[f"bonus-batch-{day_three}:{people.client_id}:USD"] == 700
    assert await credited(batch_platform, people.freelancer_id) == 1_700
    await ledger_is_clean(client)


async def test_the_scheduled_batches_run_each_missed_day_once_billing_is_back_with_a_correlation_of_their_date(
        client, batch_platform):
    """Billing "comes back" 33 days later: the timer of each business day that ended meanwhile fires once."""
    _, [bonus_id] = await many_bonuses(client, clients=1, per_client=1)
    today = datetime.now(timezone.utc).date()
    ahead = datetime.combine(today + timedelta(days=AHEAD_DAYS + 3), datetime.min.time(), timezone.utc) + timedelta(
        hours=1) - datetime.now(timezone.utc)
    batch_platform.env.update(CLOCK_OFFSET=str(ahead.total_seconds()), BONUS_BATCH_AT="00:00")
    await batch_platform.restart(BILLING, signal.SIGTERM)

    last = today + timedelta(days=AHEAD_DAYS + 2)  # the day that ended an hour ago, for billing
    done = await client.wait_for(lambda e: e.type == "BonusBatchCompleted" and e.data["business_date"] == str(last),
                                 timeout=90, what=f"the scheduled batch of {last}")
    assert (done.actor, done.correlationid) == ("system", bonus_batch.scheduled_correlation_id(last))
    # The first missed day that had no batch yet took the bonus (the earlier ones were run by the tests above).
    [paid] = [e for e in client.of_type("BonusPaid", bonus_id=bonus_id)]
    assert paid.correlationid == bonus_batch.scheduled_correlation_id(date.fromisoformat(paid.data["business_date"]))
    for day in range(1, AHEAD_DAYS + 3):
        batch = await client.get_json("billing", f"/bonus-batches/{today + timedelta(days=day)}")
        assert batch["status"] == "completed", batch
    conn = await asyncpg.connect(batch_platform.database_url("billing").replace("+asyncpg", ""))
    try:
        pending = await conn.fetch(
            "SELECT timer_id, due_at FROM timers WHERE kind = 'bonus_batch' AND fired_at IS NULL")
    finally:
        await conn.close()
    assert [(r["timer_id"], r["due_at"]) for r in pending] == [
        (f"bonus_batch:{last + timedelta(days=1)}", datetime.combine(last + timedelta(days=2), datetime.min.time(),
                                                                     timezone.utc))]
    await ledger_is_clean(client)


async def becomes(read, expected, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while (found := await read()) != expected:
        assert time.monotonic() < deadline, f"{what}: {found!r}, not {expected!r}"
        await asyncio.sleep(0.2)


async def test_a_declined_bonus_charge_is_a_past_due_balance_retried_daily_then_paid_or_failed(
        client, batch_platform):
    """PAST_DUE_RETRY_DAYS=1: declined on billing's day 40, retried on day 41 (the last retry). The business days
    run are past the ones the scheduled batches above completed."""
    today = datetime.now(timezone.utc).date()
    batch_platform.env.update(CLOCK_OFFSET="P40D", BONUS_BATCH_AT="off", PAST_DUE_RETRY_DAYS="1")
    await batch_platform.restart(BILLING, signal.SIGTERM)
    payer, defaulter = await asyncio.gather(parties(client), parties(client))
    contracts = await asyncio.gather(hired(client, payer), hired(client, defaulter))
    await asyncio.gather(*(add_card(client, p.client_id, "tok_chargeDeclined") for p in (payer, defaulter)))
    owed = list(await asyncio.gather(give(client, payer.client_id, contracts[0], 1_200),
                                     give(client, defaulter.client_id, contracts[1], 800)))
    await known_to_billing(client, owed)

    day = today + timedelta(days=AHEAD_DAYS + 5)
    done = await completed(client, await run_batch(client, day))
    assert done.data["past_due"] >= 2
    paid, failed = outcomes_of(client, day)
    assert not set(owed) & (set(paid) | set(failed))  # neither paid nor failed: owed
    told = await client.wait_for(lambda e: e.type == "PastDueBalanceChanged" and e.data["client_id"] == payer.client_id,
                                 what="the payer's past-due balance")
    assert (told.data["amount"], told.data["previous_amount"], told.data["reason_code"]) == (1_200, 0, "card_declined")
    assert told.data["retry_until"] == str(today + timedelta(days=AHEAD_DAYS + 11))
    await becomes(lambda: client.get_json("escrow", f"/accounts/{payer.client_id}/balance"),
                  {"USD": {"pending": 0, "available": 0, "past_due": 1_200}}, "escrow's balance of the payer")
    await becomes(lambda: _account_past_due(client, payer.client_id), {"USD": 1_200}, "contracts' word")
    assert await refusal(client, GiveBonus(contract_id=contracts[0], bonus_id=new_id("bonus"), amount=500,
                                           note="More"), contracts[0], payer.client_id) == "past_due_balance"
    new_offer = offer_of(payer)
    assert await refusal(client, new_offer, new_offer.contract_id, payer.client_id) == "past_due_balance"
    await becomes(lambda: _kinds(client, payer.client_id), True, "the payer told", timeout=30)

    # The payer makes a working card primary; the next day's batch retries on it. The defaulter's last retry fails.
    await add_card(client, payer.client_id, "tok_visa")
    batch_platform.env.update(CLOCK_OFFSET="P41D")
    await batch_platform.restart(BILLING, signal.SIGTERM)
    day_two = day + timedelta(days=1)
    await completed(client, await run_batch(client, day_two))
    paid, failed = outcomes_of(client, day_two)
    assert owed[0] in paid and owed[1] in failed
    assert failed[owed[1]].data["reason_code"] == "card_declined"
    assert (await gateway_charges(batch_platform, day_two))[f"bonus-batch-{day_two}:{payer.client_id}:USD"] == 1_200
    assert await credited(batch_platform, payer.freelancer_id) == 1_200
    assert await credited(batch_platform, defaulter.freelancer_id) == 0
    for person in (payer, defaulter):
        await client.wait_for(lambda e, who=person.client_id: e.type == "PastDueBalanceChanged"
                              and e.data["client_id"] == who and e.data["amount"] == 0, what="settled")
        await becomes(lambda who=person.client_id: _account_past_due(client, who), None, "contracts' word")
    assert await client.get_json("escrow", f"/accounts/{payer.client_id}/balance") == {}
    await give(client, payer.client_id, contracts[0], 300)  # accepted again
    await ledger_is_clean(client)


ANSWER_LOST = "tok_chargeAnswerLost"  # the gateway simulator takes the money; the answer never comes


async def net_bonus_charges(platform, client_id: str) -> int:
    """What the payment network kept of every bonus charge of the client: charged less given back (voids)."""
    [row] = await query(platform, "gateway", "SELECT coalesce(sum(amount - refunded), 0) AS net FROM sim_charges "
                                             "WHERE idempotency_key LIKE 'bonus-batch-%:' || $1 || ':USD'", client_id)
    return row["net"]


async def bonus_void_status(platform, charge_id: str) -> str | None:
    [row] = await query(platform, "billing", "SELECT void_status FROM bonus_charges WHERE charge_id = $1", charge_id)
    return row["void_status"]


async def test_a_bonus_charge_taken_but_never_answered_is_voided_before_a_later_batch_charges_it_once(
        client, batch_platform):
    """The gateway takes the charge of day D, but its answer never comes: billing gives it up (gateway_unavailable)
    and the bonus is past due. The charge's key is voided before any later batch may charge the bonus again: while
    the gateway answers no void, the next day's batch (after a billing restart) leaves the bonus alone; once the void
    is answered (the taken charge given back), the next batch charges it under its own key. The client pays once."""
    today = datetime.now(timezone.utc).date()
    batch_platform.env.update(CLOCK_OFFSET="P42D", BONUS_BATCH_AT="off", PAST_DUE_RETRY_DAYS="1")
    await batch_platform.restart(BILLING, signal.SIGTERM)
    people = await parties(client)
    contract_id = await hired(client, people)
    await add_card(client, people.client_id, ANSWER_LOST)
    bonus_id = await give(client, people.client_id, contract_id, 900)
    await known_to_billing(client, [bonus_id])
    day = today + timedelta(days=AHEAD_DAYS + 7)
    charge_id = bonus_batch.charge_id(day, people.client_id, "USD")
    await gateway_fault(batch_platform, ANSWER_LOST, "void", "unavailable")  # the void is not answered for now
    try:
        done = await completed(client, await run_batch(client, day), timeout=90)
        assert done.data["past_due"] >= 1 and bonus_id not in {**outcomes_of(client, day)[0], **outcomes_of(client, day)[1]}
        failed = await client.wait_for(lambda e: e.type == "ChargeFailed" and e.data["client_id"] == people.client_id
                                       and e.data["purpose"] == "bonus", what="the bonus charge given up")
        assert (failed.data["reason_code"], failed.data["retryable"]) == ("gateway_unavailable", True)
        assert await net_bonus_charges(batch_platform, people.client_id) == 900  # taken, though billing never heard
        assert await bonus_void_status(batch_platform, charge_id) == "pending"
        work = await client.get_json("billing", "/gateway-work?status=pending&limit=1000")
        [listed] = [w for w in work["items"] if w["work_id"] == charge_id]
        assert (listed["operation"], listed["amount"], listed["saga_id"]) == ("bonus_void", 900, f"bonus-batch-{day}")

        # The next day, on a working card, after a restart: the void is still owed, so the bonus is not charged.
        await add_card(client, people.client_id, "tok_visa")
        batch_platform.env.update(CLOCK_OFFSET="P43D")
        await batch_platform.restart(BILLING, signal.SIGTERM)
        day_two = day + timedelta(days=1)
        await completed(client, await run_batch(client, day_two))
        assert not any(people.client_id in key for key in await gateway_charges(batch_platform, day_two))
        assert (await client.get_json("billing", f"/bonuses/{bonus_id}"))["status"] == "past_due"
        assert await bonus_void_status(batch_platform, charge_id) == "pending"
    finally:
        await gateway_fault_over(batch_platform, ANSWER_LOST, "void")

    # The gateway answers voids again: the key is voided (the taken charge given back), then a batch retries it.
    await becomes(lambda: bonus_void_status(batch_platform, charge_id), "done", "the given-up bonus charge's void")
    assert await net_bonus_charges(batch_platform, people.client_id) == 0
    day_three = day + timedelta(days=2)
    await completed(client, await run_batch(client, day_three))
    assert bonus_id in outcomes_of(client, day_three)[0]
    assert (await gateway_charges(batch_platform, day_three))[f"bonus-batch-{day_three}:{people.client_id}:USD"] == 900
    assert await net_bonus_charges(batch_platform, people.client_id) == 900  # exactly one net charge
    assert await credited(batch_platform, people.freelancer_id) == 900
    await becomes(lambda: _account_past_due(client, people.client_id), None, "contracts' word")
    await ledger_is_clean(client)


async def _account_past_due(client: PlatformClient, account_id: str):
    return (await client.get_json("contracts", f"/accounts/{account_id}")).get("past_due")


async def _kinds(client: PlatformClient, account_id: str) -> bool:
    body = await client.get_json("notifications", f"/accounts/{account_id}/notifications?limit=100")
    return any(i["kind"] == "past_due_balance" for i in body["items"])


async def refusal(client: PlatformClient, data, subject: str, actor: str) -> str:
    outcome = await command(client, data, subject, actor, {"BonusGiven", "OfferSent", "OfferFundingFailed"})
    assert outcome.type == "CommandRejected", outcome.data
    return outcome.data["reason_code"]
