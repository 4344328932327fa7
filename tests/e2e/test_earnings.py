"""The earnings security period end to end (EARNINGS_PENDING_FOR=PT3S in the platform fixture): a release
lands in the freelancer's pending account, escrow's durable timer moves it to available once the period
is over, the balance, the events and billing's history show both steps, and the ledger check stays clean."""

import asyncio
import time
from datetime import timedelta

import pytest
from platform_schemas.commands.contracts import ApproveMilestone

from tests.support.lifecycle import Platform, lifecycle, money_checked  # noqa: F401 - fixtures
from tests.support.polling import eventually
from tests.support.times import at

pytestmark = pytest.mark.e2e
PENDING_FOR = timedelta(seconds=3)  # tests/conftest.py


async def balance_becomes(p: Platform, account_id: str, expected: dict, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while (found := await p.client.get_json("escrow", f"/accounts/{account_id}/balance")) != expected:
        assert time.monotonic() < deadline, f"balance of {account_id} is {found}, not {expected}"
        await asyncio.sleep(0.2)
    return found


async def test_a_release_is_pending_for_the_security_period_then_available(lifecycle: Platform):
    p = lifecycle
    deal = await p.active_deal(await p.parties(), (50_000,))
    assert await p.client.get_json("escrow", f"/accounts/{deal.freelancer_id}/balance") == {}
    await p.submit(deal)
    approve = await p.send(ApproveMilestone(contract_id=deal.contract_id, milestone_id=deal.ids[0]), deal.client_id)
    released = await p.caused(approve, "EscrowReleased")
    available_at = at(released.data["available_at"])
    assert abs(available_at - (released.time + PENDING_FOR)) < timedelta(seconds=1)
    assert ("freelancer_pending:" + deal.freelancer_id + ":USD") in {
        x["credit_account"] for x in released.data["postings"]}

    if not p.events.about(deal.contract_id, "EarningAvailable"):  # not yet moved (a loaded machine may be late)
        balance = await p.client.get_json("escrow", f"/accounts/{deal.freelancer_id}/balance")
        assert balance in ({"USD": {"pending": 50_000, "available": 0}},
                           {"USD": {"pending": 0, "available": 50_000}})

    became = await p.event(deal.contract_id, "EarningAvailable", earning_id=released.data["release_id"])
    assert became.time >= available_at  # never before the end of the period
    assert became.data["amount"] == 50_000 and became.data["milestone_id"] == deal.ids[0]
    assert [(x["debit_account"], x["credit_account"]) for x in became.data["postings"]] == [
        (f"freelancer_pending:{deal.freelancer_id}:USD", f"freelancer:{deal.freelancer_id}:USD")]
    await balance_becomes(p, deal.freelancer_id, {"USD": {"pending": 0, "available": 50_000}})

    async def earnings() -> list[dict]:  # billing records it from escrow's events, a moment after they are published
        history = await p.client.get_json("billing", f"/accounts/{deal.freelancer_id}/transactions")
        return [t for t in history["items"] if t["kind"] == "fixed_price_earning"]
    [earning] = await eventually(earnings, 30, "the earning in billing's history")
    assert at(earning["available_at"]) == available_at
    await p.assert_ledger_clean()


async def test_each_release_of_a_contract_has_its_own_period_and_balances_add_up(lifecycle: Platform):
    p = lifecycle
    deal = await p.active_deal(await p.parties(), (20_000, 30_000), deposit="all_milestones")
    for milestone_id in deal.ids:
        await p.submit(deal, milestone_id)
        await p.do(ApproveMilestone(contract_id=deal.contract_id, milestone_id=milestone_id), deal.client_id,
                   "MilestonePaid")
    for milestone_id in deal.ids:
        await p.event(deal.contract_id, "EarningAvailable", milestone_id=milestone_id)
    await balance_becomes(p, deal.freelancer_id, {"USD": {"pending": 0, "available": 50_000}})
    await p.assert_ledger_clean()
