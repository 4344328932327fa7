"""Durable timers end to end, with the platform fixture's short timers (review 6 s, reminder 3 s before,
refund window 6 s): auto-release, the reminder, a change request stopping the clock, silence in the
refund window, and exactly-once firing with two contracts instances while one is killed.
"""

import asyncio
import signal

import pytest
from platform_schemas.commands.contracts import CancelContract, RequestChanges

from tests.support.lifecycle import Deal, Platform, lifecycle, money_checked  # noqa: F401 - fixtures
from tests.support.ports import free_port
from tests.support.times import at

pytestmark = pytest.mark.e2e


async def auto_release_with_a_reminder(p: Platform, deal: Deal) -> None:
    submitted = await p.submit(deal)
    due = at(submitted.data["review_due_at"])
    reminder = await p.event(deal.contract_id, "ReviewPeriodEndingSoon", timeout=20)
    released = await p.event(deal.contract_id, "MilestoneAutoReleased", timeout=20)
    paid = await p.event(deal.contract_id, "MilestonePaid", timeout=20)
    assert at(reminder.time) < due <= at(released.time) <= at(paid.time)
    assert (released.actor, paid.data["automatic"], paid.data["amount"]) == ("system", True, 50_000)
    # a flow started by a timer carries the correlation id of the command that armed it
    assert {reminder.correlationid, released.correlationid, paid.correlationid} == {submitted.correlationid}
    await p.expect_history(deal.freelancer_id, deal.contract_id, [("fixed_price_earning", 50_000, deal.ids[0])])


async def a_change_request_stops_the_clock(p: Platform, deal: Deal) -> None:
    await p.submit(deal)
    changes = await p.do(RequestChanges(contract_id=deal.contract_id, milestone_id=deal.ids[0],
                                        message="Warmer colours"), deal.client_id, "ChangesRequested")
    await asyncio.sleep(2)  # the resubmission comes later, so the two review periods end apart
    again = await p.submit(deal)
    released = await p.event(deal.contract_id, "MilestoneAutoReleased", timeout=20)
    await p.event(deal.contract_id, "MilestonePaid", timeout=20)
    assert at(released.time) >= at(again.data["review_due_at"])
    assert released.data["review_due_at"] == again.data["review_due_at"]
    assert len(p.events.about(deal.contract_id, "MilestoneAutoReleased")) == 1
    # The first review's reminder was cancelled by the change request: none fires after it but the resubmission's.
    # (Due 3 s after the first submission, it may have fired before the request was handled on a loaded machine.)
    reminders = p.events.about(deal.contract_id, "ReviewPeriodEndingSoon")
    assert [r.data["review_due_at"] for r in reminders if at(r.time) > at(changes.time)] == [
        again.data["review_due_at"]], (reminders, changes)


async def silence_accepts_the_refund(p: Platform, deal: Deal) -> None:
    await p.submit(deal)
    cancel = await p.send(CancelContract(contract_id=deal.contract_id, reason="No longer needed"), deal.client_id)
    asked = await p.caused(cancel, "RefundRequested")
    accepted = await p.event(deal.contract_id, "RefundAccepted", timeout=20)
    cancelled = await p.event(deal.contract_id, "ContractCancelled", timeout=20)
    assert accepted.actor == "system" and at(accepted.time) >= at(asked.data["respond_by"])
    assert accepted.correlationid == cancel.id and cancelled.data["refunded_amount"] == 50_000
    contract = await p.settled(deal.contract_id)
    assert (contract["status"], contract["milestones"][0]["status"]) == ("cancelled", "refunded")
    assert not p.events.about(deal.contract_id, "MilestonePaid")
    assert [k for k, _, _ in await p.history(deal.client_id, deal.contract_id)] == ["fixed_price_charge", "refund"]


async def test_review_and_refund_timers_fire_on_time_and_only_when_still_due(lifecycle: Platform):
    p = lifecycle
    people = await p.parties()
    deals = await asyncio.gather(*(p.active_deal(people) for _ in range(3)))
    await asyncio.gather(auto_release_with_a_reminder(p, deals[0]), a_change_request_stops_the_clock(p, deals[1]),
                         silence_accepts_the_refund(p, deals[2]))


@pytest.mark.crash
async def test_two_instances_and_one_killed_mid_way_pay_each_auto_released_milestone_exactly_once(
        lifecycle: Platform, platform):
    p = lifecycle
    second = platform.start("contracts", instance="1", port=free_port())
    try:
        people = await p.parties()
        deals = await asyncio.gather(*(p.active_deal(people, (10_000 + i,)) for i in range(12)))
        await platform.wait_ready(second)
        early, late = deals[:6], deals[6:]
        await asyncio.gather(*(p.submit(d) for d in early))
        await asyncio.sleep(2.5)  # a second wave, due later: still pending when the instance dies
        await asyncio.gather(*(p.submit(d) for d in late))
        await p.event(early[0].contract_id, "MilestoneAutoReleased", timeout=30)
        platform.kill(second, signal.SIGKILL)  # wherever it was: firing a timer, relaying, consuming a batch
        assert not any(p.events.about(d.contract_id, "MilestoneAutoReleased") for d in late), "too late to kill"
        # The survivor fires what is left and, once the group has rebalanced, takes over the saga replies.
        await asyncio.gather(*(p.event(d.contract_id, "MilestonePaid", timeout=90) for d in deals))
    finally:
        platform.kill(second, signal.SIGKILL)
    for d in deals:
        assert [len(p.events.about(d.contract_id, t)) for t in ("MilestoneAutoReleased", "MilestonePaid")] == [1, 1]
        amount, milestone_id = d.milestones[d.ids[0]], d.ids[0]
        await p.expect_history(d.client_id, d.contract_id, [
            ("fixed_price_charge", -amount, milestone_id), ("escrow_release", amount, milestone_id),
            ("payment", -amount, milestone_id)])
        await p.expect_history(d.freelancer_id, d.contract_id, [("fixed_price_earning", amount, milestone_id)])
        assert (await p.milestone(d.contract_id, milestone_id))["status"] == "paid"
