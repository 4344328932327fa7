"""The contract lifecycle end to end: four service processes on real Kafka and PostgreSQL.

After every test (tests/support/lifecycle.py: money_checked) the ledger check is clean and each
touched contract's escrow equals its funded, unreleased milestones.
"""

import asyncio

import pytest
from platform_schemas.commands.contracts import (
    AcceptOffer, ActivateMilestone, AddMilestone, ApproveMilestone, CancelContract, DeclineOffer, EditMilestone,
    EndContract, MilestoneSpec, RemoveMilestone, RequestChanges, ResolveDispute, RespondToRefundRequest, SubmitWork,
    WithdrawOffer,
)

from tests.support.lifecycle import Platform, lifecycle, money_checked  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e
ADMIN = "admin:tests"


async def test_a_contract_from_offer_to_end_with_changes_a_next_milestone_and_both_sides_history(
        lifecycle: Platform):
    p = lifecycle
    people = await p.parties()
    deal = await p.active_deal(people, (50_000, 30_000))
    m1, m2 = deal.ids

    first = await p.submit(deal, m1)
    shown = await p.milestone(deal.contract_id, m1)
    assert shown["status"] == "submitted" and shown["review_due_at"] == first.data["review_due_at"]
    await p.do(RequestChanges(contract_id=deal.contract_id, milestone_id=m1, message="Bigger logo"),
               deal.client_id, "ChangesRequested")
    shown = await p.milestone(deal.contract_id, m1)
    assert shown["status"] == "changes_requested" and "review_due_at" not in shown
    second = await p.submit(deal, m1)
    assert second.data["review_due_at"] > first.data["review_due_at"]

    # Approve, keep the contract open, and define and fund the next milestone in the same command.
    m3 = f"{m1}-next"
    approve = await p.send(ApproveMilestone(contract_id=deal.contract_id, milestone_id=m1, keep_open=True,
                                            next_milestone=MilestoneSpec(milestone_id=m3, title="Icons",
                                                                         amount=20_000)), deal.client_id)
    funded = await p.outcome(approve, {"MilestoneFunded", "MilestoneFundingFailed"})
    assert funded.type == "MilestoneFunded" and funded.data["milestone_id"] == m3
    caused = [e.type for e in p.events.by_key[("correlation", approve.id)] if e.source == "contracts"]
    assert caused.index("MilestoneApproved") < caused.index("MilestonePaid") < caused.index("MilestoneFunded")
    assert (await p.caused(approve, "MilestonePaid")).data["amount"] == 50_000

    await p.do(ActivateMilestone(contract_id=deal.contract_id, milestone_id=m2), deal.client_id, "MilestoneFunded")
    # Each submitted just before its approval: a review lasts 6 s here, then the milestone is released by itself.
    await p.submit(deal, m2)
    await p.do(ApproveMilestone(contract_id=deal.contract_id, milestone_id=m2), deal.client_id, "MilestonePaid")
    await p.submit(deal, m3)
    assert await p.refused(ApproveMilestone(contract_id=deal.contract_id, milestone_id=m3, keep_open=True),
                           deal.freelancer_id) == "forbidden"
    ended = await p.do(ApproveMilestone(contract_id=deal.contract_id, milestone_id=m3, keep_open=False),
                       deal.client_id, "ContractEnded")
    assert ended.data["ended_by"] == deal.client_id

    contract = await p.contract(deal.contract_id)
    assert contract["status"] == "ended"
    assert [(m["milestone_id"], m["status"], m["amount"]) for m in contract["milestones"]] == \
        [(m1, "paid", 50_000), (m2, "paid", 30_000), (m3, "paid", 20_000)]
    assert [h["status"] for h in contract["milestones"][0]["history"]] == \
        ["funding", "funded", "submitted", "changes_requested", "submitted", "releasing", "paid"]
    assert (await p.client.get_json("escrow", f"/escrow/{deal.contract_id}"))["balance"] == 0

    await p.expect_history(deal.client_id, deal.contract_id, [
        ("fixed_price_charge", -50_000, m1), ("fixed_price_charge", -20_000, m3), ("fixed_price_charge", -30_000, m2),
        ("escrow_release", 50_000, m1), ("payment", -50_000, m1), ("escrow_release", 30_000, m2),
        ("payment", -30_000, m2), ("escrow_release", 20_000, m3), ("payment", -20_000, m3)])
    await p.expect_history(deal.freelancer_id, deal.contract_id, [
        ("fixed_price_earning", 50_000, m1), ("fixed_price_earning", 30_000, m2), ("fixed_price_earning", 20_000, m3)])


async def test_only_unfunded_milestones_are_edited_or_removed_and_new_ones_are_funded_now_or_later(
        lifecycle: Platform):
    p = lifecycle
    deal = await p.active_deal(await p.parties(), (50_000, 30_000))
    c, m1, m2 = deal.contract_id, *deal.ids
    edited = await p.do(EditMilestone(contract_id=c, milestone_id=m2, title="Final files", amount=35_000),
                        deal.client_id, "MilestoneEdited")
    assert (edited.data["title"], edited.data["amount"]) == ("Final files", 35_000)
    assert await p.refused(EditMilestone(contract_id=c, milestone_id=m1, amount=1_000_000), deal.client_id) == \
        "invalid_state"
    assert await p.refused(RemoveMilestone(contract_id=c, milestone_id=m1), deal.client_id) == "invalid_state"
    assert await p.refused(EditMilestone(contract_id=c, milestone_id=m2, amount=100), deal.client_id) == \
        "amount_out_of_range"

    later, now = f"{c}-later", f"{c}-now"
    await p.do(AddMilestone(contract_id=c, milestone_id=later, title="Later", amount=10_000), deal.client_id,
               "MilestoneAdded")
    add_now = await p.send(AddMilestone(contract_id=c, milestone_id=now, title="Now", amount=15_000, fund_now=True),
                           deal.client_id)
    assert (await p.outcome(add_now, {"MilestoneFunded"})).type == "MilestoneFunded"
    assert (await p.caused(add_now, "MilestoneAdded")).data["amount"] == 15_000
    await p.do(RemoveMilestone(contract_id=c, milestone_id=later), deal.client_id, "MilestoneRemoved")
    await p.do(ActivateMilestone(contract_id=c, milestone_id=m2), deal.client_id, "MilestoneFunded")
    assert await p.refused(ActivateMilestone(contract_id=c, milestone_id=m2), deal.client_id) == "invalid_state"
    assert await p.refused(AddMilestone(contract_id=c, milestone_id=m1, title="Dup", amount=10_000),
                           deal.client_id) == "id_taken"

    contract = await p.contract(c)
    assert [(m["milestone_id"], m["status"], m["amount"]) for m in contract["milestones"]] == \
        [(m1, "funded", 50_000), (m2, "funded", 35_000), (now, "funded", 15_000)]
    escrow = await p.client.get_json("escrow", f"/escrow/{c}")
    assert escrow["balance"] == 100_000
    # keep_open false is refused while another milestone still holds escrow, and changes nothing
    await p.submit(deal, m1)
    assert await p.refused(ApproveMilestone(contract_id=c, milestone_id=m1, keep_open=False), deal.client_id) == \
        "escrow_held"
    assert (await p.milestone(c, m1))["status"] == "submitted"


async def test_withdrawing_or_declining_an_offer_refunds_the_deposit_to_the_card(lifecycle: Platform):
    p = lifecycle
    people = await p.parties()
    withdrawn, declined = await asyncio.gather(p.offer(people, (40_000, 25_000), deposit="all_milestones"),
                                               p.offer(people, (30_000, 10_000)))
    assert await p.refused(WithdrawOffer(contract_id=withdrawn.contract_id), people.freelancer_id) == "forbidden"
    assert await p.refused(DeclineOffer(contract_id=declined.contract_id), people.client_id) == "forbidden"
    done = await asyncio.gather(
        p.do(WithdrawOffer(contract_id=withdrawn.contract_id), people.client_id, "OfferWithdrawn"),
        p.do(DeclineOffer(contract_id=declined.contract_id, reason="Busy"), people.freelancer_id, "OfferDeclined"))
    assert [e.data["refunded_amount"] for e in done] == [65_000, 30_000]
    for deal, status in ((withdrawn, "withdrawn"), (declined, "declined")):
        contract = await p.contract(deal.contract_id)
        assert contract["status"] == status
        # the refund came first: OfferWithdrawn / OfferDeclined is the last word
        types = [e.type for e in p.events.about(deal.contract_id) if e.source == "contracts"]
        assert types.index("MilestoneRefunded") < types.index("OfferWithdrawn" if status == "withdrawn"
                                                                else "OfferDeclined")
        refunds = [(k, a) for k, a, _ in await p.history(people.client_id, deal.contract_id) if k == "refund"]
        assert sum(a for _, a in refunds) == sum(m["amount"] for m in contract["milestones"]
                                                 if m["status"] == "refunded")
    assert await p.refused(AcceptOffer(contract_id=declined.contract_id), people.freelancer_id) == "invalid_state"


async def test_ending_by_the_freelancer_refunds_what_is_held_and_the_client_may_not_end_while_escrow_is_held(
        lifecycle: Platform):
    p = lifecycle
    deal = await p.active_deal(await p.parties(), (50_000, 30_000))
    c, m1, m2 = deal.contract_id, *deal.ids
    await p.do(ActivateMilestone(contract_id=c, milestone_id=m2), deal.client_id, "MilestoneFunded")
    await p.submit(deal, m1)
    refused = await p.send(EndContract(contract_id=c), deal.client_id)
    rejection = await p.outcome(refused, set())
    assert rejection.data["reason_code"] == "escrow_held"
    assert (await p.contract(c))["status"] == "active"
    ended = await p.do(EndContract(contract_id=c), deal.freelancer_id, "ContractEnded")
    assert (ended.data["ended_by"], ended.data["refunded_amount"]) == (deal.freelancer_id, 80_000)
    for milestone_id in (m1, m2):
        await p.event(c, "MilestoneRefunded", milestone_id=milestone_id)
    contract = await p.settled(c)
    assert (contract["status"], [m["status"] for m in contract["milestones"]]) == ("ended", ["refunded", "refunded"])
    assert sorted(a for k, a, _ in await p.history(deal.client_id, c) if k == "refund") == [30_000, 50_000]
    assert await p.history(deal.freelancer_id, c) == []


async def test_cancelling_refunds_unsubmitted_work_asks_about_submitted_work_and_an_admin_splits_a_dispute(
        lifecycle: Platform):
    p = lifecycle
    deal = await p.active_deal(await p.parties(), (50_000, 30_000, 20_000), deposit="all_milestones")
    c, m1, m2, m3 = deal.contract_id, *deal.ids
    await p.submit(deal, m1)
    await p.submit(deal, m2)
    await p.do(RequestChanges(contract_id=c, milestone_id=m2, message="Redo"), deal.client_id, "ChangesRequested")

    cancel = await p.send(CancelContract(contract_id=c, reason="Project stopped"), deal.client_id)
    asked = [await p.caused(cancel, "RefundRequested", milestone_id=m) for m in (m1, m2)]
    assert all(a.data["respond_by"] for a in asked)
    await p.caused(cancel, "MilestoneRefunded", milestone_id=m3)  # no work on it: refunded at once
    contract = await p.contract(c)
    assert contract["status"] == "cancelling"
    assert {m["milestone_id"]: m["status"] for m in contract["milestones"]} == \
        {m1: "refund_requested", m2: "refund_requested", m3: "refunded"}
    assert (await p.milestone(c, m1))["respond_by"] == asked[0].data["respond_by"]

    assert await p.refused(RespondToRefundRequest(contract_id=c, milestone_id=m1, accept=True), deal.client_id) == \
        "forbidden"
    await p.do(RespondToRefundRequest(contract_id=c, milestone_id=m1, accept=False), deal.freelancer_id,
               "DisputeOpened")
    await p.do(RespondToRefundRequest(contract_id=c, milestone_id=m2, accept=True), deal.freelancer_id,
               "MilestoneRefunded")
    assert (await p.contract(c))["status"] == "cancelling"  # the dispute holds m1's money

    assert await p.refused(ResolveDispute(contract_id=c, milestone_id=m1, release_amount=30_000,
                                          refund_amount=10_000), ADMIN) == "amounts_do_not_add_up"
    assert await p.refused(ResolveDispute(contract_id=c, milestone_id=m1, release_amount=30_000,
                                          refund_amount=20_000), deal.client_id) == "forbidden"
    await p.do(ResolveDispute(contract_id=c, milestone_id=m1, release_amount=30_000, refund_amount=20_000), ADMIN,
               "DisputeResolved")
    cancelled = await p.event(c, "ContractCancelled")
    assert (cancelled.data["refunded_amount"], cancelled.data["released_amount"]) == (70_000, 30_000)
    contract = await p.settled(c)
    assert contract["status"] == "cancelled"
    assert {m["milestone_id"]: (m["status"], m["released_amount"], m["refunded_amount"])
            for m in contract["milestones"]} == \
        {m1: ("split", 30_000, 20_000), m2: ("refunded", 0, 30_000), m3: ("refunded", 0, 20_000)}
    await p.expect_history(deal.freelancer_id, c, [("fixed_price_earning", 30_000, m1)])
    await p.expect_history(deal.client_id, c, [
        ("fixed_price_charge", -100_000, None), ("escrow_release", 30_000, m1), ("payment", -30_000, m1),
        ("refund", 20_000, m1), ("refund", 30_000, m2), ("refund", 20_000, m3)])


async def test_a_dispute_released_in_full_still_ends_the_cancellation(lifecycle: Platform):
    p = lifecycle
    deal = await p.active_deal(await p.parties(), (50_000,))
    c, m1 = deal.contract_id, deal.ids[0]
    await p.submit(deal, m1)
    cancel = await p.send(CancelContract(contract_id=c, reason="Changed my mind"), deal.client_id)
    await p.caused(cancel, "RefundRequested")
    await p.do(RespondToRefundRequest(contract_id=c, milestone_id=m1, accept=False), deal.freelancer_id,
               "DisputeOpened")
    await p.do(ResolveDispute(contract_id=c, milestone_id=m1, release_amount=50_000, refund_amount=0), ADMIN,
               "DisputeResolved")
    cancelled = await p.event(c, "ContractCancelled")
    assert (cancelled.data["refunded_amount"], cancelled.data["released_amount"]) == (0, 50_000)
    assert (await p.settled(c))["status"] == "cancelled"


async def test_every_command_on_a_contract_that_does_not_exist_is_rejected_as_not_found(lifecycle: Platform):
    p = lifecycle
    c, m = "contract-that-never-was", "ms-that-never-was"
    commands = [
        (WithdrawOffer(contract_id=c), "client-x"), (AcceptOffer(contract_id=c), "free-x"),
        (DeclineOffer(contract_id=c), "free-x"),
        (AddMilestone(contract_id=c, milestone_id=f"{m}-2", title="T", amount=10_000), "client-x"),
        (EditMilestone(contract_id=c, milestone_id=m, title="T"), "client-x"),
        (RemoveMilestone(contract_id=c, milestone_id=m), "client-x"),
        (ActivateMilestone(contract_id=c, milestone_id=m), "client-x"),
        (SubmitWork(contract_id=c, milestone_id=m, message="x"), "free-x"),
        (RequestChanges(contract_id=c, milestone_id=m, message="x"), "client-x"),
        (ApproveMilestone(contract_id=c, milestone_id=m), "client-x"),
        (EndContract(contract_id=c), "client-x"), (CancelContract(contract_id=c, reason="x"), "client-x"),
        (RespondToRefundRequest(contract_id=c, milestone_id=m, accept=True), "free-x"),
        (ResolveDispute(contract_id=c, milestone_id=m, release_amount=1, refund_amount=0), ADMIN),
    ]
    reasons = await asyncio.gather(*(p.refused(data, actor) for data, actor in commands))
    assert dict(zip([type(d).__name__ for d, _ in commands], reasons)) == \
        {type(d).__name__: "not_found" for d, _ in commands}
    assert (await p.client.get("contracts", f"/contracts/{c}")).status_code == 404


async def test_commands_by_the_wrong_party_or_in_the_wrong_state_change_nothing(lifecycle: Platform):
    p = lifecycle
    deal = await p.active_deal(await p.parties(), (50_000, 30_000))
    c, m1, m2 = deal.contract_id, *deal.ids
    before = await p.contract(c)
    refusals = [
        (SubmitWork(contract_id=c, milestone_id=m1, message="x"), deal.client_id, "forbidden"),
        (ApproveMilestone(contract_id=c, milestone_id=m1), deal.freelancer_id, "forbidden"),
        (CancelContract(contract_id=c, reason="x"), deal.freelancer_id, "forbidden"),
        (AddMilestone(contract_id=c, milestone_id=f"{c}-x", title="T", amount=10_000), deal.freelancer_id,
         "forbidden"),
        (ResolveDispute(contract_id=c, milestone_id=m1, release_amount=50_000, refund_amount=0), ADMIN,
         "invalid_state"),
        (RequestChanges(contract_id=c, milestone_id=m1, message="x"), deal.client_id, "invalid_state"),
        (SubmitWork(contract_id=c, milestone_id=m2, message="x"), deal.freelancer_id, "invalid_state"),
        (ApproveMilestone(contract_id=c, milestone_id=m2), deal.client_id, "invalid_state"),
        (AcceptOffer(contract_id=c), deal.freelancer_id, "invalid_state"),
        (WithdrawOffer(contract_id=c), deal.client_id, "invalid_state"),
        (RespondToRefundRequest(contract_id=c, milestone_id=m1, accept=True), deal.freelancer_id, "invalid_state"),
        (AddMilestone(contract_id=c, milestone_id=f"{c}-y", title="T", amount=10), deal.client_id,
         "amount_out_of_range"),
    ]
    for data, actor, reason in refusals:  # one after the other: each must leave the contract as it was
        assert (type(data).__name__, await p.refused(data, actor)) == (type(data).__name__, reason)
    after = await p.contract(c)
    assert after == before
