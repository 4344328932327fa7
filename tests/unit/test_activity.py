"""Activity (PRODUCT.md, Accounts): every contract action and every money movement counts for both parties,
so the daily sweep marks nobody inactive who is active; and which failed charges count towards suspension.

Handlers and saga replies are the contracts service's own, on the in-memory fakes, under a frozen clock.
"""

from datetime import date, timedelta

import pytest
from platform_schemas.commands.contracts import (
    AcceptOffer, ActivateMilestone, AddMilestone, ApproveMilestone, CancelContract, EditMilestone, EndContract,
    GiveBonus, RemoveMilestone, RequestChanges, SubmitWork,
)
from platform_schemas.events.billing import BonusFailed, BonusPaid, ChargeFailed
from platform_schemas.events.escrow import EscrowReleased

from billing.domain.failed_charges import counts_in_streak
from contracts.domain import contracts as domain
from contracts.domain.accounts import activity_is_news, activity_resolution
from contracts.domain.sagas import ReleaseData, Saga
from contracts.service_layer import bonuses, endings, milestones, offers
from contracts.adapters.bonus_repository import BonusRepository
from contracts.service_layer.sagas.replies import handle_reply
from tests.support.fakes import NOON
from tests.unit.test_accounts import account, context, contract_with, handle

pytestmark = pytest.mark.unit

LATER = timedelta(hours=3)
# (the command, its handler, the state m-1 needs, the contract's status, the actor)
ACTIONS = [
    (AcceptOffer(contract_id="c-1"), offers.accept_offer, domain.FUNDED, domain.OFFERED, "free-1"),
    (AddMilestone(contract_id="c-1", milestone_id="m-3", title="More", amount=5_000), milestones.add_milestone,
     domain.FUNDED, domain.ACTIVE, "client-1"),
    (EditMilestone(contract_id="c-1", milestone_id="m-2", title="Final art"), milestones.edit_milestone,
     domain.FUNDED, domain.ACTIVE, "client-1"),
    (RemoveMilestone(contract_id="c-1", milestone_id="m-2"), milestones.remove_milestone, domain.FUNDED,
     domain.ACTIVE, "client-1"),
    (ActivateMilestone(contract_id="c-1", milestone_id="m-2"), milestones.activate_milestone, domain.FUNDED,
     domain.ACTIVE, "client-1"),
    (SubmitWork(contract_id="c-1", milestone_id="m-1", message="done"), milestones.submit_work, domain.FUNDED,
     domain.ACTIVE, "free-1"),
    (RequestChanges(contract_id="c-1", milestone_id="m-1", message="more"), milestones.request_changes,
     domain.SUBMITTED, domain.ACTIVE, "client-1"),
    (ApproveMilestone(contract_id="c-1", milestone_id="m-1"), milestones.approve_milestone, domain.SUBMITTED,
     domain.ACTIVE, "client-1"),
    (CancelContract(contract_id="c-1", reason="no longer needed"), endings.cancel_contract, domain.FUNDED,
     domain.ACTIVE, "client-1"),
    (EndContract(contract_id="c-1"), endings.end_contract, domain.FUNDED, domain.ACTIVE, "free-1"),
    (GiveBonus(contract_id="c-1", bonus_id="b-1", amount=1_000, note="thanks"), bonuses.give_bonus, domain.FUNDED,
     domain.ACTIVE, "client-1"),
]


def two_parties_seen_yesterday():
    ctx = context(account("client-1", "client"), account("free-1", "freelancer"))
    ctx.uow.clock.advance(LATER)
    return ctx


def last_activity(ctx) -> tuple:
    return ctx.accounts.stored("client-1").last_activity_at, ctx.accounts.stored("free-1").last_activity_at



@pytest.mark.parametrize(("data", "handler", "m1_status", "status", "actor"), ACTIONS,
                         ids=[type(a[0]).__name__ for a in ACTIONS])
async def test_every_contract_action_counts_as_activity_of_both_parties(data, handler, m1_status, status, actor,
                                                                        monkeypatch):
    ctx = two_parties_seen_yesterday()
    contract_with(ctx, m1_status, status)
    if isinstance(data, GiveBonus):
        async def stored(self, bonus) -> bool:
            return True
        monkeypatch.setattr(BonusRepository, "add", stored)
    await handle(ctx, handler, data, actor)
    assert last_activity(ctx) == (ctx.now, ctx.now)


async def test_a_release_counts_for_the_client_who_pays_and_the_freelancer_who_earns():
    ctx = two_parties_seen_yesterday()
    contract = contract_with(ctx, domain.RELEASING)
    saga = Saga.start("release", "c-1", None, "approve-1", "release",
                      ReleaseData(milestone_id="m-1", amount=10_000, automatic=True), NOON)
    await ctx.sagas.save(saga)
    await handle_reply(EscrowReleased(release_id=saga.step_id("release"), saga_id=saga.saga_id, contract_id="c-1",
                                      milestone_id="m-1", client_id=contract.client_id, freelancer_id="free-1",
                                      amount=10_000, currency="USD", postings=[]), ctx)
    assert ctx.contracts.stored("c-1").milestone("m-1").status == domain.PAID
    assert last_activity(ctx) == (ctx.now, ctx.now)


async def test_a_bonus_paid_counts_for_both_a_failed_one_for_nobody(monkeypatch):
    async def settle(self, *args) -> None:
        return None
    monkeypatch.setattr(BonusRepository, "settle", settle)
    ctx = two_parties_seen_yesterday()
    seen = last_activity(ctx)
    common = dict(business_date=date(2026, 11, 25), bonus_id="b-1", contract_id="c-1", client_id="client-1",
                  freelancer_id="free-1", amount=1_000, currency="USD")
    await bonuses.on_bonus_failed(BonusFailed(reason_code="card_declined", message="no", **common), ctx)
    assert last_activity(ctx) == seen
    await bonuses.on_bonus_paid(BonusPaid(charge_id="bc-1", **common), ctx)
    assert last_activity(ctx) == (ctx.now, ctx.now)


def test_activity_is_written_again_only_once_it_is_older_than_a_thousandth_of_the_inactivity_period():
    assert activity_resolution(timedelta(days=365)) == timedelta(hours=1)  # capped
    assert activity_resolution(timedelta(seconds=10)) == timedelta(milliseconds=10)
    hour = timedelta(hours=1)
    assert activity_is_news(None, NOON, hour)
    assert activity_is_news(NOON - 2 * hour, NOON, hour)
    assert not activity_is_news(NOON - hour / 2, NOON, hour)


async def test_activity_within_the_resolution_is_not_written_again():
    ctx = context(account("client-1", "client"), account("free-1", "freelancer"))
    await ctx.record_activity("client-1")
    first = ctx.now
    ctx.uow.clock.advance(timedelta(minutes=10))
    await ctx.record_activity("client-1")
    assert ctx.accounts.stored("client-1").last_activity_at == first


# -- failed charges and suspension -----------------------------------------------------------------


def bonus_charge_failed(consecutive_failures: int, reason_code: str = "card_declined") -> ChargeFailed:
    return ChargeFailed(charge_id="bc-20261125-abc", saga_id="bonus-batch-2026-11-25", client_id="client-1",
                        amount=3_000, currency="USD", purpose="bonus", reason_code=reason_code, message="declined",
                        consecutive_failures=consecutive_failures, business_date=date(2026, 11, 25), bonuses=2)


@pytest.mark.parametrize(("streak", "suspended"), [(4, False), (5, True), (6, True)])
async def test_a_declined_bonus_charge_counts_in_the_streak_and_can_suspend_the_client(streak, suspended):
    ctx = context(account("client-1", "client"), account("free-1", "freelancer"))
    await handle_reply(bonus_charge_failed(streak), ctx)
    assert (ctx.accounts.stored("client-1").status == "suspended") is suspended
    assert ctx.uow.types() == (["AccountSuspended"] if suspended else [])
    if suspended:
        event = ctx.uow.messages()[0]
        assert (event.subject, event.actor, event.data["automatic"], event.data["appealable"]) == \
            ("client-1", "system", True, True)


async def test_an_already_suspended_client_is_not_suspended_again():
    ctx = context(account("client-1", "client", "suspended", appealable=False), account("free-1", "freelancer"))
    await handle_reply(bonus_charge_failed(7), ctx)
    assert ctx.uow.types() == []
    assert ctx.accounts.stored("client-1").appealable is False


@pytest.mark.parametrize(("reason_code", "counts"), [("card_declined", True), ("insufficient_funds", True),
                                                     ("no_primary_method", False)])
def test_a_charge_refused_for_no_primary_method_took_nothing_and_does_not_count(reason_code, counts):
    assert counts_in_streak(reason_code) is counts


async def test_an_earning_becoming_available_counts_for_the_freelancer():
    from platform_schemas.events.escrow import EarningAvailable
    ctx = two_parties_seen_yesterday()
    seen = last_activity(ctx)
    await bonuses.on_earning_available(EarningAvailable(
        earning_id="rel-1", contract_id="c-1", milestone_id="m-1", freelancer_id="free-1", amount=10_000,
        currency="USD", available_at=ctx.now, postings=[]), ctx)
    assert last_activity(ctx) == (seen[0], ctx.now)
