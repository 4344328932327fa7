"""A running batch's progress is counted again only when the last count is older than ten times its cost."""

import asyncio
from datetime import date

import pytest

from billing.service_layer import bonus_progress
from billing.service_layer.bonus_progress import ProgressCounts

pytestmark = pytest.mark.unit
DAY = date(2026, 12, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(bonus_progress.time, "monotonic", fake.monotonic)
    return fake


def counter(clock: Clock, cost: float):
    calls = []

    async def count() -> dict[str, int]:
        calls.append(clock.now)
        clock.now += cost  # the count takes `cost` seconds
        return {"paid": len(calls)}

    return count, calls


async def test_a_cheap_count_is_served_for_min_age_then_made_again(clock):
    progress, (count, calls) = ProgressCounts(min_age=1.0), counter(clock, 0.01)
    assert await progress.get(DAY, count) == ({"paid": 1}, 0.0)
    clock.now += 0.5
    assert await progress.get(DAY, count) == ({"paid": 1}, 0.5)
    clock.now += 0.6
    assert (await progress.get(DAY, count))[0] == {"paid": 2} and len(calls) == 2


async def test_a_costly_count_waits_fifty_times_its_cost(clock):
    progress, (count, calls) = ProgressCounts(min_age=1.0), counter(clock, 0.5)  # a batch of a million
    await progress.get(DAY, count)
    clock.now += 24.9
    assert (await progress.get(DAY, count))[0] == {"paid": 1}
    clock.now += 0.2
    assert (await progress.get(DAY, count))[0] == {"paid": 2}


async def test_requests_at_once_share_one_count_and_a_completed_batch_is_forgotten(clock):
    progress, (count, calls) = ProgressCounts(), counter(clock, 0.01)
    results = await asyncio.gather(*(progress.get(DAY, count) for _ in range(5)))
    assert len(calls) == 1 and all(counts == {"paid": 1} for counts, _ in results)
    progress.forget(DAY)
    await progress.get(DAY, count)
    assert len(calls) == 2


async def test_a_caller_content_with_an_older_count_shares_the_last_one_made_for_another(clock):
    progress, (count, calls) = ProgressCounts(min_age=1.0), counter(clock, 0.01)
    await progress.get(DAY, count)  # an HTTP read
    clock.now += 1.5
    assert await progress.get(DAY, count, max_age=2.0) == ({"paid": 1}, pytest.approx(1.5))  # the runner's log
    assert (await progress.get(DAY, count))[0] == {"paid": 2}  # the next HTTP read wants a newer one
    clock.now += 2.1
    assert (await progress.get(DAY, count, max_age=2.0))[0] == {"paid": 3} and len(calls) == 3
