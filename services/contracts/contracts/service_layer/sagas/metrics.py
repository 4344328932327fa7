"""Saga metrics: how long sagas take to end, by kind and outcome (the gauges of stuck ones: saga_gauges.py)."""

from datetime import datetime

from prometheus_client import Histogram

from ...domain.sagas import Saga

SAGA_DURATION = Histogram("saga_duration_seconds", "Time from a saga's start to its final state",
                          ["kind", "outcome"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600))


def finished(saga: Saga, now: datetime) -> None:
    # Observed before the commit: a transaction that then rolls back counts once too often, a rare
    # case the histogram can bear (the gauges are read from the database and stay exact).
    if saga.created_at is not None:
        SAGA_DURATION.labels(saga.kind, saga.status).observe(max((now - saga.created_at).total_seconds(), 0.0))
