"""The gateway loop looks for due charges only when it may find some: one NOTIFY wakes every worker of an instance,
and only the first one claims; a batch that came back not full is not looked for again until something is
announced or GATEWAY_POLL passes; a full batch is looked for again at once."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from billing.adapters.wakeup import Wakeup
from billing.domain.gateway_work import RetryPolicy
from billing.service_layer.gateway_loop import GatewayLoop
from billing.settings import BillingSettings

from tests.support.settings import UNCONNECTED_URL

pytestmark = pytest.mark.unit


class Claims:
    """A unit of work and a context whose only work is the claim of due charges (none due): claims are counted."""

    def __init__(self) -> None:
        self.made = 0
        self.now = datetime(2026, 12, 1, tzinfo=timezone.utc)
        self.work = self

    async def due_charges(self, now, limit: int) -> list:
        self.made += 1
        await asyncio.sleep(0)  # a round trip: the other workers run meanwhile
        return []

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        return None


def a_loop(poll: timedelta = timedelta(hours=1)) -> tuple[GatewayLoop, Wakeup, Claims]:
    claims = Claims()
    settings = BillingSettings(database_url=UNCONNECTED_URL, gateway_poll=poll)
    wakeup = Wakeup(UNCONNECTED_URL, "channel", routine="charge")
    loop = GatewayLoop(lambda: claims, lambda uow: claims, gateway=None, settings=settings,
                       policy=RetryPolicy(timedelta(seconds=1), timedelta(seconds=8)), wakeup=wakeup)
    return loop, wakeup, claims


async def four_workers_pass(loop: GatewayLoop) -> None:
    await asyncio.gather(*(loop.charge_due() for _ in range(4)))


async def test_one_notification_of_a_charge_costs_one_claim_however_many_workers_it_wakes():
    loop, wakeup, claims = a_loop()
    await four_workers_pass(loop)  # the first pass looks
    assert claims.made == 1
    await four_workers_pass(loop)  # nothing announced since: nobody looks
    assert claims.made == 1
    wakeup._notified("charge")  # noqa: SLF001 - what the listener calls
    await four_workers_pass(loop)
    assert claims.made == 2


async def test_other_work_announced_does_not_look_for_charges_and_a_listen_restarted_does():
    loop, wakeup, claims = a_loop()
    await loop.charge_due()
    wakeup._notified("other")  # noqa: SLF001 - a refund recorded: looked for by its own path
    await loop.charge_due()
    assert claims.made == 1
    wakeup._notified(None)  # noqa: SLF001 - listening (re)started: anything may be due
    await loop.charge_due()
    assert claims.made == 2


async def test_retries_due_by_time_are_looked_for_once_per_poll():
    loop, _, claims = a_loop(poll=timedelta(0))
    for _ in range(3):
        await four_workers_pass(loop)
    assert claims.made >= 3


async def test_a_full_batch_is_followed_by_another_look_at_once():
    loop, _, claims = a_loop()
    await loop.charge_due()
    loop._more_charges = True  # noqa: SLF001 - what a full batch leaves
    await loop.charge_due()
    assert claims.made == 2


async def test_a_full_batch_wakes_the_other_workers_to_look_at_once():
    loop, wakeup, claims = a_loop()
    loop.settings.gateway_batch = 2
    charge = {"charge_id": "c-1", "saga_id": "s-1", "token": None, "billing_method_id": "bm-1",
              "causation_id": None, "correlation_id": None, "actor": None}

    async def full(now, limit: int) -> list:
        claims.made += 1
        return [dict(charge, charge_id=f"c-{n}") for n in range(limit)]

    claims.due_charges = full
    wakeup.event.clear()
    with pytest.raises(KeyError):  # the fake's rows stop after the claim (settling is tested end to end)
        await loop.charge_due()
    assert claims.made == 1 and wakeup.event.is_set() and loop._more_charges  # noqa: SLF001
