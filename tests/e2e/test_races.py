"""Races on real Kafka and PostgreSQL, each run 100 times at once on 100 separate contracts.

approve vs auto-release, approve vs cancel, two approvals of one milestone, cancel vs submit: each
contract ends in exactly one outcome and its money moves once, seen three ways: the contracts
service's events, the escrow (tests/support/lifecycle.py: money_checked, with the ledger check) and
both parties' transaction history.
"""

import asyncio
import random
import time
from collections import Counter
from datetime import datetime

import pytest
import pytest_asyncio
from platform_schemas.commands.contracts import ApproveMilestone, CancelContract, SubmitWork

from tests.support.lifecycle import Deal, Platform, lifecycle, money_checked  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e
RUNS = 100
RACES = ("approve_vs_auto_release", "approve_vs_cancel", "two_approvals", "cancel_vs_submit")
AMOUNT = 20_000


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def prepared(client) -> dict[str, list[Deal]]:
    """100 active contracts per race, each with its one milestone funded, all prepared at once."""
    p = Platform(client)
    people = await asyncio.gather(*(p.parties() for _ in RACES))
    deals = await asyncio.gather(*(p.active_deal(people[r], (AMOUNT,), timeout=180)
                                   for r in range(len(RACES)) for _ in range(RUNS)))
    return {race: deals[r * RUNS:(r + 1) * RUNS] for r, race in enumerate(RACES)}


async def both(first, second, swap: bool):
    """Send two commands back to back, in either order; returns their envelopes in the given order."""
    if swap:
        b = await second
        return await first, b
    a = await first
    return a, await second


async def money_moved_once(p: Platform, deals: list[Deal], released: set[str], timeout: float = 60) -> None:
    """Each milestone shows in both histories exactly once as released (to the freelancer) or as refunded.

    Billing records history from escrow's events, so the last rows may come a moment after the outcome.
    """
    expected = {}
    for d in deals:
        m = d.ids[0]
        charge = ("fixed_price_charge", -AMOUNT, m)
        if d.contract_id in released:
            expected[d.contract_id] = (sorted([charge, ("escrow_release", AMOUNT, m), ("payment", -AMOUNT, m)]),
                                       [("fixed_price_earning", AMOUNT, m)])
        else:
            expected[d.contract_id] = (sorted([charge, ("refund", AMOUNT, m)]), [])
    deadline = time.monotonic() + timeout
    while True:
        client_side, freelancer_side = await asyncio.gather(p.histories(deals[0].client_id),
                                                            p.histories(deals[0].freelancer_id))
        found = {c: (sorted(client_side.get(c, [])), freelancer_side.get(c, [])) for c in expected}
        if found == expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    for contract_id, want in expected.items():
        assert found[contract_id] == want, contract_id


def once(p: Platform, deal: Deal, type_name: str) -> int:
    return len(p.events.about(deal.contract_id, type_name))


async def test_approve_vs_auto_release(lifecycle: Platform, prepared):
    p, deals = lifecycle, prepared["approve_vs_auto_release"]

    async def race(d: Deal) -> str:
        submitted = await p.submit(d)
        due = datetime.fromisoformat(submitted.data["review_due_at"].replace("Z", "+00:00")).timestamp()
        await asyncio.sleep(max(0.0, due + random.uniform(-0.8, 0.4) - time.time()))  # aim at the deadline
        approve = await p.send(ApproveMilestone(contract_id=d.contract_id, milestone_id=d.ids[0]), d.client_id)
        outcome = await p.outcome(approve, {"MilestonePaid"}, timeout=60)
        paid = await p.event(d.contract_id, "MilestonePaid", timeout=60)
        if outcome.type == "MilestonePaid":
            assert paid.data["automatic"] is False and once(p, d, "MilestoneAutoReleased") == 0
            return "approved"
        assert outcome.data["reason_code"] == "invalid_state", outcome.data
        assert paid.data["automatic"] is True and once(p, d, "MilestoneApproved") == 0
        return "auto_released"

    winners = Counter(await asyncio.gather(*(race(d) for d in deals)))
    print(f"approve vs auto-release: {dict(winners)}")
    assert sum(winners.values()) == RUNS
    for d in deals:
        assert once(p, d, "MilestonePaid") == 1 and once(p, d, "MilestoneApproved") + \
            once(p, d, "MilestoneAutoReleased") == 1
    await money_moved_once(p, deals, released={d.contract_id for d in deals})


async def test_approve_vs_cancel(lifecycle: Platform, prepared):
    p, deals = lifecycle, prepared["approve_vs_cancel"]

    async def race(i: int, d: Deal) -> str:
        await p.submit(d)
        approve, cancel = await both(
            p.send(ApproveMilestone(contract_id=d.contract_id, milestone_id=d.ids[0]), d.client_id),
            p.send(CancelContract(contract_id=d.contract_id, reason="Changed plans"), d.client_id), swap=i % 2 == 1)
        approved, cancelled = await asyncio.gather(
            p.outcome(approve, {"MilestonePaid"}, timeout=60),
            p.outcome(cancel, {"RefundRequested", "ContractCancelled"}, timeout=60))
        money = await p.events.first(("subject", d.contract_id),
                                     lambda e: e.type in ("MilestonePaid", "MilestoneRefunded"), 60, "money")
        if money.type == "MilestonePaid":
            # released by the approval or, had both come too late, by the review period's end
            assert (approved.type == "MilestonePaid") is not money.data["automatic"], approved.data
            # the cancel came during the release (refused) or after it (nothing left to refund)
            assert cancelled.type == "CommandRejected" or cancelled.data["refunded_amount"] == 0, cancelled.data
            return "approved" if approved.type == "MilestonePaid" else "auto_released"
        assert approved.type == "CommandRejected" and cancelled.type == "RefundRequested"
        await p.event(d.contract_id, "ContractCancelled", timeout=60)  # silence in the window: refunded
        return "cancelled"

    winners = Counter(await asyncio.gather(*(race(i, d) for i, d in enumerate(deals))))
    print(f"approve vs cancel: {dict(winners)}")
    released = {d.contract_id for d in deals if once(p, d, "MilestonePaid")}
    for d in deals:
        assert once(p, d, "MilestonePaid") + once(p, d, "MilestoneRefunded") == 1, d.contract_id
    await money_moved_once(p, deals, released)


async def test_two_approvals_of_the_same_milestone(lifecycle: Platform, prepared):
    """On funded milestones (approval needs no submitted work): no review timer can take part in this race."""
    p, deals = lifecycle, prepared["two_approvals"]

    async def race(d: Deal) -> None:
        approvals = await asyncio.gather(*(
            p.send(ApproveMilestone(contract_id=d.contract_id, milestone_id=d.ids[0]), d.client_id)
            for _ in range(2)))
        outcomes = await asyncio.gather(*(p.outcome(a, {"MilestonePaid"}, timeout=60) for a in approvals))
        assert sorted(o.type for o in outcomes) == ["CommandRejected", "MilestonePaid"]
        assert next(o for o in outcomes if o.type == "CommandRejected").data["reason_code"] == "invalid_state"

    await asyncio.gather(*(race(d) for d in deals))
    for d in deals:
        assert (once(p, d, "MilestoneApproved"), once(p, d, "MilestonePaid")) == (1, 1)
    await money_moved_once(p, deals, released={d.contract_id for d in deals})


async def test_cancel_vs_submit(lifecycle: Platform, prepared):
    p, deals = lifecycle, prepared["cancel_vs_submit"]

    async def race(i: int, d: Deal) -> str:
        cancel, submit = await both(
            p.send(CancelContract(contract_id=d.contract_id, reason="Changed plans"), d.client_id),
            p.send(SubmitWork(contract_id=d.contract_id, milestone_id=d.ids[0], message="Done"), d.freelancer_id),
            swap=i % 2 == 1)
        submitted, cancelled = await asyncio.gather(
            p.outcome(submit, {"WorkSubmitted"}, timeout=60),
            p.outcome(cancel, {"RefundRequested", "ContractCancelled"}, timeout=60))
        money = await p.events.first(("subject", d.contract_id),
                                     lambda e: e.type in ("MilestonePaid", "MilestoneRefunded"), 60, "money")
        if submitted.type == "CommandRejected":  # cancelled first: nothing was submitted, refunded at once
            assert submitted.data["reason_code"] == "invalid_state" and cancelled.type == "ContractCancelled"
            assert money.type == "MilestoneRefunded"
            return "cancelled_first"
        if money.type == "MilestonePaid":  # the cancel came so late that the review period had ended
            assert money.data["automatic"] and (cancelled.type == "CommandRejected"
                                                or cancelled.data["refunded_amount"] == 0)
            return "auto_released"
        assert cancelled.type == "RefundRequested"  # work was in: the freelancer is asked, silence refunds
        await p.event(d.contract_id, "ContractCancelled", timeout=60)
        return "submitted_first"

    winners = Counter(await asyncio.gather(*(race(i, d) for i, d in enumerate(deals))))
    print(f"cancel vs submit: {dict(winners)}")
    released = {d.contract_id for d in deals if once(p, d, "MilestonePaid")}
    for d in deals:
        assert once(p, d, "MilestonePaid") + once(p, d, "MilestoneRefunded") == 1, d.contract_id
    await money_moved_once(p, deals, released)
