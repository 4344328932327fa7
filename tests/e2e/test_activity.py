"""Activity end to end: with the daily inactivity sweep running every second and a ten-second inactivity
period, a pair whose only activity is a contract's life (an offer, work submitted, then an auto-release in
which nobody acts, money only moves) stays active throughout, while pairs that do nothing are marked inactive.

The contracts process runs with the short settings for this module only: the sweep marks every idle
account of the session inactive meanwhile, so later modules register their own people (as they all do).
"""

import asyncio
import signal
import time
from datetime import timedelta

import pytest
import pytest_asyncio
from platform_schemas.commands.contracts import AcceptOffer

from tests.e2e.test_notifications import notified
from tests.support.lifecycle import Platform, lifecycle, money_checked  # noqa: F401 - fixtures
from tests.support.times import at

pytestmark = pytest.mark.e2e
CONTRACTS = "contracts#0"
INACTIVE_AFTER = 10  # seconds; the session's review period is 6 s (AUTO_RELEASE_AFTER=PT6S)
# The payment's activity is recorded in the transaction that publishes MilestonePaid (to within a hundredth of a
# second, `activity_resolution`); the submission, the freelancer's last own act, was at least 6 s before it.
PAYMENT_RECORDED_WITHIN = timedelta(seconds=1)
SHORT_SWEEP = {"ACCOUNT_INACTIVE_AFTER": f"PT{INACTIVE_AFTER}S", "INACTIVITY_SWEEP_EVERY": "PT1S"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sweeping(platform):
    saved = dict(platform.env)
    platform.env.update(SHORT_SWEEP)
    await platform.restart(CONTRACTS, signal.SIGTERM)
    yield platform
    platform.env.clear()
    platform.env.update(saved)
    await platform.restart(CONTRACTS, signal.SIGTERM)


async def until(moment: float) -> None:
    """Let the clock reach `moment` (monotonic): here the passing of time is what is tested."""
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


async def test_money_moving_on_a_contract_keeps_both_parties_active_while_idle_accounts_go_inactive(
        sweeping, lifecycle: Platform):
    p = lifecycle
    start = time.monotonic()
    active, idle = await asyncio.gather(p.parties(), p.parties())
    deal = await p.offer(active, (20_000,))
    await p.do(AcceptOffer(contract_id=deal.contract_id), deal.freelancer_id, "ContractStarted")
    # The client's own last command was the offer; from here on only the freelancer acts, then only money moves.
    await until(start + INACTIVE_AFTER / 2)
    await p.submit(deal)
    late_idle = await p.parties()  # goes inactive only after the moment the submission alone would have covered
    paid = await p.event(deal.contract_id, "MilestonePaid", timeout=30)
    assert paid.data["automatic"] is True

    for account_id in (idle.client_id, idle.freelancer_id, late_idle.client_id, late_idle.freelancer_id):
        marked = await p.event(account_id, "AccountMarkedInactive", timeout=60)
        assert marked.actor == "system"
        assert (await p.account(account_id))["status"] == "inactive"
    [told] = await notified(p.client, sweeping.smtp, idle.client_id, "account_marked_inactive")
    assert "ask for reactivation" in told["body"]
    # Every sweep until the late idle pair's (which came after the submission's cover ended) left them alone: the
    # automatic payment was activity of both. A loaded machine may reach the moment the payment's own cover ends
    # (INACTIVE_AFTER after it) while the checks above run; a sweep may mark them then, never earlier.
    for account_id in (active.client_id, active.freelancer_id):
        status = (await p.account(account_id))["status"]
        marks = p.events.about(account_id, "AccountMarkedInactive") if status == "active" else [
            await p.event(account_id, "AccountMarkedInactive")]
        for mark in marks:
            last = at(mark.data["last_activity_at"])
            assert last >= at(paid.time) - PAYMENT_RECORDED_WITHIN, (account_id, mark, paid)
            assert at(mark.time) >= last + timedelta(seconds=INACTIVE_AFTER), (account_id, mark)
