"""Accounts end to end: suspension and what it stops (and does not), reactivation, automatic suspension
after five consecutive failed charges."""

import asyncio
import time

import pytest
from platform_runtime.client import new_id
from platform_schemas.commands.contracts import (
    AcceptOffer, ActivateMilestone, AddMilestone, ApproveMilestone, CancelContract, MilestoneSpec, ReactivateAccount,
    RequestReactivation, SendOffer, SubmitWork, SuspendAccount, WithdrawOffer,
)

from tests.support.lifecycle import Platform, lifecycle, money_checked  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e
ADMIN = "admin:tests"


def new_offer(client_id: str, freelancer_id: str) -> SendOffer:
    return SendOffer(contract_id=new_id("contract"), client_id=client_id, freelancer_id=freelancer_id, title="Logo",
                     currency="USD", milestones=[MilestoneSpec(milestone_id=new_id("ms"), title="One", amount=10_000)])


async def a_suspended_client_starts_nothing_new_but_money_due_still_moves(p: Platform) -> None:
    people = await p.parties()
    deal = await p.active_deal(people, (50_000, 30_000))
    c, m1, m2 = deal.contract_id, *deal.ids
    await p.do(SuspendAccount(account_id=deal.client_id, reason="Unpaid invoices", appealable=True), ADMIN,
               "AccountSuspended")
    account = await p.account(deal.client_id)
    assert (account["status"], account["status_reason"], account["appealable"]) == \
        ("suspended", "Unpaid invoices", True)

    next_one = MilestoneSpec(milestone_id=f"{c}-next", title="Next", amount=10_000)
    refusals = await asyncio.gather(
        p.refused(new_offer(deal.client_id, deal.freelancer_id), deal.client_id),
        p.refused(AddMilestone(contract_id=c, milestone_id=f"{c}-new", title="New", amount=10_000), deal.client_id),
        p.refused(ActivateMilestone(contract_id=c, milestone_id=m2), deal.client_id))
    assert refusals == ["account_not_active"] * 3
    # Work submitted to a suspended client (submitted late: its review lasts 6 s here, then it is released by itself).
    await p.submit(deal, m1)
    # an approval that would start something new is refused whole, and changes nothing
    assert await p.refused(ApproveMilestone(contract_id=c, milestone_id=m1, next_milestone=next_one),
                           deal.client_id) == "account_not_active"
    assert (await p.milestone(c, m1))["status"] == "submitted"
    # a plain approval is money already due: it goes through
    paid = await p.do(ApproveMilestone(contract_id=c, milestone_id=m1), deal.client_id, "MilestonePaid")
    assert paid.data["amount"] == 50_000

    await p.do(RequestReactivation(account_id=deal.client_id), deal.client_id, "ReactivationRequested")
    assert (await p.account(deal.client_id))["status"] == "suspended"
    await p.do(ReactivateAccount(account_id=deal.client_id), ADMIN, "AccountReactivated")
    assert (await p.account(deal.client_id))["status"] == "active"
    await p.do(ActivateMilestone(contract_id=c, milestone_id=m2), deal.client_id, "MilestoneFunded")


async def a_suspended_freelancer_accepts_and_submits_nothing_and_a_final_suspension_is_not_reversed(
        p: Platform) -> None:
    people = await p.parties()
    offered, active = await asyncio.gather(p.offer(people, (20_000,)), p.active_deal(people, (40_000,)))
    await p.do(SuspendAccount(account_id=people.freelancer_id, reason="Fraud", appealable=False), ADMIN,
               "AccountSuspended")
    assert await p.refused(AcceptOffer(contract_id=offered.contract_id), people.freelancer_id) == \
        "account_not_active"
    assert await p.refused(SubmitWork(contract_id=active.contract_id, milestone_id=active.ids[0], message="x"),
                           people.freelancer_id) == "account_not_active"
    # refunds are money already due: withdrawing and cancelling still give the client its deposit back
    await asyncio.gather(
        p.do(WithdrawOffer(contract_id=offered.contract_id), people.client_id, "OfferWithdrawn"),
        p.do(CancelContract(contract_id=active.contract_id, reason="Freelancer gone"), people.client_id,
             "ContractCancelled"))
    refused = await p.do(RequestReactivation(account_id=people.freelancer_id), people.freelancer_id,
                         "ReactivationRefused")
    assert refused.data["reason_code"] == "suspension_final" and "Fraud" in refused.data["message"]
    assert (await p.account(people.freelancer_id))["status"] == "suspended"


async def test_suspension_stops_new_activity_not_money_already_due_and_reactivation_follows_the_appeal_rule(
        lifecycle: Platform):
    await asyncio.gather(a_suspended_client_starts_nothing_new_but_money_due_still_moves(lifecycle),
                         a_suspended_freelancer_accepts_and_submits_nothing_and_a_final_suspension_is_not_reversed(
                             lifecycle))


async def test_five_consecutive_failed_charges_suspend_the_client_automatically(lifecycle: Platform):
    p = lifecycle
    people = await p.parties(token="tok_chargeDeclined")
    failed = await asyncio.gather(*(p.offer(people, (10_000,), expect="OfferFundingFailed") for _ in range(5)))
    assert len(failed) == 5
    suspended = await p.event(people.client_id, "AccountSuspended")
    assert (suspended.actor, suspended.data["automatic"], suspended.data["appealable"]) == ("system", True, True)
    assert "5 consecutive failed charges" in suspended.data["reason"]
    assert len(p.events.about(people.client_id, "AccountSuspended")) == 1
    account = await p.account(people.client_id)
    assert (account["status"], account["appealable"]) == ("suspended", True)
    assert await p.refused(new_offer(people.client_id, people.freelancer_id), people.client_id) == \
        "account_not_active"
    await p.do(RequestReactivation(account_id=people.client_id), people.client_id, "ReactivationRequested")


async def test_offers_refused_for_want_of_a_primary_method_charged_nothing_and_never_suspend(lifecycle: Platform):
    p = lifecycle
    people = await p.parties(token=None)
    failed = await asyncio.gather(*(p.offer(people, (10_000,), expect="OfferFundingFailed") for _ in range(6)))
    assert len(failed) == 6
    deadline = time.monotonic() + 30
    while len(charges := p.client.of_type("ChargeFailed", client_id=people.client_id)) < 6:
        assert time.monotonic() < deadline, charges
        await asyncio.sleep(0.1)
    assert {(e.data["reason_code"], e.data["consecutive_failures"]) for e in charges} == {("no_primary_method", 0)}
    assert not p.events.about(people.client_id, "AccountSuspended")
    assert (await p.account(people.client_id))["status"] == "active"


async def test_account_commands_from_the_wrong_actor_or_about_nobody_are_refused(lifecycle: Platform):
    p = lifecycle
    people = await p.parties(token=None)
    reasons = await asyncio.gather(
        p.refused(SuspendAccount(account_id=people.client_id, reason="x", appealable=True), people.freelancer_id),
        p.refused(ReactivateAccount(account_id=people.client_id), people.client_id),
        p.refused(RequestReactivation(account_id=people.client_id), people.freelancer_id),
        p.refused(RequestReactivation(account_id=people.client_id), people.client_id),
        p.refused(SuspendAccount(account_id="nobody-at-all", reason="x", appealable=True), ADMIN))
    assert reasons == ["forbidden", "forbidden", "forbidden", "invalid_state", "not_found"]
    assert (await p.account(people.client_id))["status"] == "active"
