"""Which of each service's topics are read as one (service.by_dispatcher): a dispatcher's topics share a transaction
per fetched batch, topics of different dispatchers never do."""

import importlib
from types import SimpleNamespace

import pytest
from platform_runtime.service import by_dispatcher
from platform_schemas.topics import (
    BILLING_ADMIN_COMMANDS, BILLING_COMMANDS, BILLING_EVENTS, BILLING_SAGA_COMMANDS, CONTRACTS_ADMIN_COMMANDS,
    CONTRACTS_COMMANDS, CONTRACTS_EVENTS, ESCROW_EVENTS, ESCROW_SAGA_COMMANDS,
)

pytestmark = pytest.mark.unit

EXPECTED = {
    # The replies of billing and escrow are one dispatcher's (the sagas'), read ahead together.
    "contracts": [[CONTRACTS_COMMANDS], [CONTRACTS_ADMIN_COMMANDS], [BILLING_EVENTS, ESCROW_EVENTS]],
    "billing": [[BILLING_COMMANDS], [BILLING_ADMIN_COMMANDS], [BILLING_SAGA_COMMANDS], [ESCROW_EVENTS],
                [CONTRACTS_EVENTS]],
    "escrow": [[ESCROW_SAGA_COMMANDS], [BILLING_EVENTS]],
    "notifications": [[CONTRACTS_EVENTS, BILLING_EVENTS]],
}


@pytest.mark.parametrize("service", sorted(EXPECTED))
def test_each_services_topics_are_grouped_by_their_dispatcher(service):
    bootstrap = importlib.import_module(f"{service}.bootstrap")
    runtime = SimpleNamespace(new_context=object(), settings=None)
    groups = by_dispatcher(bootstrap.subscriptions(runtime))
    assert [[s.topic for s in group] for group in groups] == EXPECTED[service]
