"""Saga metrics: how many wait, by kind and status, the age of the oldest running one, how long they take.

The gauges are read from the database every METRICS_INTERVAL in every instance (one query on the
`sagas_waiting` index), so they are exact whichever instance moved the sagas.
"""

from collections.abc import Callable
from datetime import datetime

from prometheus_client import Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from platform_runtime.clock import Clock
from platform_runtime.loops import poll_forever

from ...adapters.repositories import SagaRepository
from ...domain.sagas import NEEDS_ATTENTION, RUNNING, Saga

KINDS = ("fund", "release", "refund")
SAGAS = Gauge("sagas", "Sagas still waiting, by kind and status (running, needs_attention)", ["kind", "status"])
OLDEST_RUNNING = Gauge("saga_oldest_running_age_seconds",
                       "Time since the longest-waiting running saga of this kind last moved (0: none)", ["kind"])

SAGA_DURATION = Histogram("saga_duration_seconds", "Time from a saga's start to its final state",
                          ["kind", "outcome"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600))


def finished(saga: Saga, now: datetime) -> None:
    # Observed before the commit: a transaction that then rolls back counts once too often, a rare
    # case the histogram can bear (the gauges are read from the database and stay exact).
    if saga.created_at is not None:
        SAGA_DURATION.labels(saga.kind, saga.status).observe(max((now - saga.created_at).total_seconds(), 0.0))


async def read_gauges(sessions: Callable[[], AsyncSession], clock: Clock) -> None:
    async with sessions() as session:
        rows = await SagaRepository(session).waiting_by_kind()
    now = clock.now()
    counts = {(kind, status): 0 for kind in KINDS for status in (RUNNING, NEEDS_ATTENTION)}
    oldest = dict.fromkeys(KINDS, 0.0)
    for kind, status, count, moved in rows:
        counts[(kind, status)] = count
        if status == RUNNING:
            oldest[kind] = max((now - moved).total_seconds(), 0.0)
    for (kind, status), count in counts.items():
        SAGAS.labels(kind, status).set(count)
    for kind, age in oldest.items():
        OLDEST_RUNNING.labels(kind).set(age)


def gauge_loop(sessions: Callable[[], AsyncSession], clock: Clock, every_seconds: float):
    async def run() -> None:
        async def step() -> bool:
            await read_gauges(sessions, clock)
            return False

        await poll_forever(step, every_seconds, "saga_gauges")

    return run
