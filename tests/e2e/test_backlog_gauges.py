"""Every service process exports the on-call gauges from the start: consumer lag for each partition of each topic
it consumes, the outbox backlog and its age, and (where it has timers) timers due per kind."""

import asyncio
import time

import pytest
from platform_schemas.topics import BILLING_COMMANDS, CONTRACTS_COMMANDS, ESCROW_SAGA_COMMANDS
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

CONSUMES = {"contracts": CONTRACTS_COMMANDS, "escrow": ESCROW_SAGA_COMMANDS, "billing": BILLING_COMMANDS,
            "notifications": "contracts.events"}


async def samples(client, service: str) -> dict[tuple, float]:
    text = (await client.get(service, "/metrics")).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.parametrize("service", list(CONSUMES))
async def test_each_service_exports_consumer_lag_outbox_and_timer_gauges(client, service):
    deadline = time.monotonic() + 60
    while True:
        exported = await samples(client, service)
        lag = {dict(labels)["partition"]: value for (name, labels), value in exported.items()
               if name == "kafka_consumer_lag" and dict(labels)["topic"] == CONSUMES[service]}
        if len(lag) == 12 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert sorted(lag, key=int) == [str(p) for p in range(12)], exported.keys()
    assert all(value >= 0 for value in lag.values())
    assert exported[("outbox_unsent", ())] >= 0
    assert exported[("outbox_oldest_unsent_age_seconds", ())] >= 0
    if service == "contracts":
        kinds = {dict(labels)["kind"] for (name, labels) in exported if name == "timers_due"}
        assert "auto_release" in kinds, kinds
        assert ("timers_oldest_overdue_seconds", (("kind", "auto_release"),)) in exported
