"""What is coming up, end to end: GET /accounts/{id}/upcoming on contracts, from a contract's life on real Kafka and
PostgreSQL: an auto-release with its reminder, a pending bonus's next batch (the client's charge, the freelancer's
payment), an earning becoming available after its security period, a refund request's deadline; and the same on
the submission's event. Escrow runs with a two-minute security period here, so the earning is still ahead when read.
"""

import signal
from datetime import date, datetime, timedelta, timezone

import pytest
import pytest_asyncio
from platform_runtime.client import new_id
from platform_schemas.commands.contracts import ApproveMilestone, CancelContract, GiveBonus

from tests.support.lifecycle import Platform, lifecycle, money_checked  # noqa: F401 - fixtures
from tests.support.times import at

pytestmark = pytest.mark.e2e
ESCROW = "escrow#0"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def slow_earnings(platform):
    saved = dict(platform.env)
    platform.env.update(EARNINGS_PENDING_FOR="PT120S")
    await platform.restart(ESCROW, signal.SIGTERM)
    yield platform
    platform.env.clear()
    platform.env.update(saved)
    await platform.restart(ESCROW, signal.SIGTERM)


async def coming_up(p: Platform, account_id: str) -> list[dict]:
    body = await p.client.get_json("contracts", f"/accounts/{account_id}/upcoming")
    assert body["account_id"] == account_id
    times = [at(i["at"]) for i in body["items"] if "at" in i]
    assert times == sorted(times), "soonest first"
    return body["items"]


def of_kind(items: list[dict], kind: str) -> list[dict]:
    return [i for i in items if i["kind"] == kind]


async def test_everything_ahead_of_a_client_and_a_freelancer_soonest_first(slow_earnings, lifecycle: Platform):
    p = lifecycle
    people = await p.parties()
    deal = await p.active_deal(people, (20_000, 30_000), deposit="all_milestones")
    first, second = deal.ids
    given = await p.do(GiveBonus(contract_id=deal.contract_id, bonus_id=new_id("bonus"), amount=1_500,
                                 note="Thanks"), deal.client_id, "BonusGiven")
    batch_at = datetime.combine(date.fromisoformat(given.data["business_date"]) + timedelta(days=1),
                                datetime.min.time(), tzinfo=timezone.utc)  # BONUS_BATCH_AT 00:00 by default

    submitted = await p.submit(deal, first)
    review_due, reminder = at(submitted.data["review_due_at"]), at(submitted.data["review_reminder_at"])
    assert review_due - reminder == timedelta(seconds=3)  # the session's REVIEW_REMINDER_BEFORE
    client_items, freelancer_items = await coming_up(p, deal.client_id), await coming_up(p, deal.freelancer_id)
    [release] = of_kind(client_items, "auto_release")
    assert (release["milestone_id"], release["amount"], at(release["at"]), at(release["reminder_at"])) == \
        (first, 20_000, review_due, reminder)
    [charge] = of_kind(client_items, "bonus_charge")
    assert (charge["amount"], charge["currency"], charge["bonuses"], at(charge["at"])) == (1_500, "USD", 1, batch_at)
    assert [i["milestone_id"] for i in of_kind(freelancer_items, "auto_release")] == [first]
    [payment] = of_kind(freelancer_items, "bonus_payment")
    assert (payment["bonus_id"], payment["amount"], at(payment["at"])) == (given.data["bonus_id"], 1_500, batch_at)
    # The submission's event told both the same (what notifications shows them).
    assert [i["kind"] for i in submitted.data["client_upcoming"]] == [i["kind"] for i in client_items][:10]
    assert [i["kind"] for i in submitted.data["freelancer_upcoming"]] == [i["kind"] for i in freelancer_items][:10]

    await p.do(ApproveMilestone(contract_id=deal.contract_id, milestone_id=first, keep_open=True), deal.client_id,
               "MilestonePaid")
    released = await p.client.wait_for(lambda e: e.type == "EscrowReleased" and e.data["milestone_id"] == first)
    freelancer_items = await coming_up(p, deal.freelancer_id)
    [earning] = of_kind(freelancer_items, "earning_available")
    assert (earning["milestone_id"], earning["amount"], at(earning["at"])) == \
        (first, 20_000, at(released.data["available_at"]))
    assert of_kind(freelancer_items, "auto_release") == []  # released by the approval
    assert of_kind(await coming_up(p, deal.client_id), "earning_available") == []  # the freelancer's alone

    await p.submit(deal, second)
    await p.do(CancelContract(contract_id=deal.contract_id, reason="Stop"), deal.client_id, "RefundRequested")
    asked = await p.event(deal.contract_id, "RefundRequested")
    for person in (deal.client_id, deal.freelancer_id):
        [deadline] = of_kind(await coming_up(p, person), "refund_request_deadline")
        assert (deadline["milestone_id"], deadline["amount"], at(deadline["at"])) == \
            (second, 30_000, at(asked.data["respond_by"]))
    assert (await p.client.get("contracts", "/accounts/nobody-at-all/upcoming")).status_code == 404
