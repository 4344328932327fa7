"""What is coming up (domain/upcoming.py and the submission's notice), under a frozen clock on fakes."""

from datetime import date, datetime, time, timedelta, timezone

import pytest
from platform_schemas.commands.contracts import SubmitWork

from contracts.domain import contracts as domain
from contracts.domain import upcoming
from contracts.domain.upcoming import PendingBonus
from contracts.service_layer import milestones
from contracts.service_layer.upcoming import upcoming_for
from tests.support.fakes import NOON
from tests.unit.test_accounts import account, context, contract_with, handle

pytestmark = pytest.mark.unit

DAY = date(2026, 11, 26)


def bonus(bonus_id: str, amount: int, currency: str = "USD", day: date = DAY, client: str = "client-1",
          freelancer: str = "free-1") -> PendingBonus:
    return PendingBonus(bonus_id, "c-1", client, freelancer, amount, currency, day)


def test_a_days_bonuses_are_charged_by_the_next_days_batch_at_its_time():
    assert upcoming.batch_time(DAY, time(0, 0)) == datetime(2026, 11, 27, tzinfo=timezone.utc)
    assert upcoming.batch_time(DAY, time(6, 30)) == datetime(2026, 11, 27, 6, 30, tzinfo=timezone.utc)
    assert upcoming.batch_time(DAY, None) is None  # the schedule is off: only operators run batches


def test_the_client_sees_one_charge_per_batch_and_currency_the_freelancer_each_bonus():
    pending = [bonus("b-1", 1_000), bonus("b-2", 2_500), bonus("b-3", 700, "EUR"),
               bonus("b-4", 400, day=DAY + timedelta(days=1)), bonus("b-5", 300, freelancer="free-2")]
    client = upcoming.soonest_first(upcoming.bonus_items("client-1", pending, time(0, 0)), 10)
    assert sorted((u.at.day, u.kind, u.amount, u.currency, u.bonuses) for u in client) == [
        (27, "bonus_charge", 700, "EUR", 1), (27, "bonus_charge", 3_800, "USD", 3),
        (28, "bonus_charge", 400, "USD", 1)]
    assert [u.at.day for u in client] == [27, 27, 28]  # soonest first
    freelancer = upcoming.bonus_items("free-1", pending, time(0, 0))
    assert sorted(u.bonus_id for u in freelancer) == ["b-1", "b-2", "b-3", "b-4"]
    assert {u.kind for u in freelancer} == {"bonus_payment"}


async def test_everything_ahead_comes_soonest_first_and_is_bounded():
    ctx = context(account("client-1", "client"), account("free-1", "freelancer"))
    due = NOON + timedelta(days=14)
    ctx.upcoming.items["free-1"] = [
        upcoming.earning_available("c-1", "milestone", "m-0", 9_000, "USD", NOON + timedelta(days=5)),
        upcoming.auto_release("c-1", "m-1", 10_000, "USD", due, timedelta(days=2)),
        upcoming.refund_deadline("c-2", "m-7", 5_000, "USD", NOON + timedelta(days=7))]
    ctx.upcoming.bonuses = [bonus("b-1", 1_000)]
    items = await upcoming_for(ctx.upcoming, "free-1", ctx.now, ctx.settings, 10)
    assert [u.kind for u in items] == ["bonus_payment", "earning_available", "refund_request_deadline",
                                       "auto_release"]
    assert items[-1].reminder_at == due - timedelta(days=2)
    assert len(await upcoming_for(ctx.upcoming, "free-1", ctx.now, ctx.settings, 2)) == 2


async def test_a_submission_tells_both_parties_the_reminder_and_what_is_coming_up():
    ctx = context(account("client-1", "client"), account("free-1", "freelancer"))
    contract_with(ctx, domain.FUNDED)
    ctx.upcoming.bonuses = [bonus("b-1", 1_000)]
    await handle(ctx, milestones.submit_work, SubmitWork(contract_id="c-1", milestone_id="m-1", message="done"),
                 "free-1")
    [submitted] = [e for e in ctx.uow.messages() if e.type == "WorkSubmitted"]
    due = NOON + timedelta(days=14)
    assert submitted.data["review_reminder_at"] == (due - timedelta(days=2)).isoformat().replace("+00:00", "Z")
    assert [u["kind"] for u in submitted.data["client_upcoming"]] == ["bonus_charge"]
    assert [u["kind"] for u in submitted.data["freelancer_upcoming"]] == ["bonus_payment"]
