"""Which of each service's topics are read as one (service.by_dispatcher): a dispatcher's topics share a transaction
per fetched batch, topics of different dispatchers never do."""

import importlib
from types import SimpleNamespace

import pytest
from platform_runtime.service import by_dispatcher

pytestmark = pytest.mark.unit

EXPECTED = {
    # The replies of billing and escrow are one dispatcher's (the sagas'), read ahead together.
    "contracts": [["contracts.commands"], ["contracts.admin-commands"], ["billing.events", "escrow.events"]],
    "billing": [["billing.commands"], ["billing.admin-commands"], ["billing.saga-commands"], ["escrow.events"],
                ["contracts.events"]],
    "escrow": [["escrow.saga-commands"], ["billing.events"]],
    "notifications": [["contracts.events", "billing.events"]],
}


@pytest.mark.parametrize("service", sorted(EXPECTED))
def test_each_services_topics_are_grouped_by_their_dispatcher(service):
    bootstrap = importlib.import_module(f"{service}.bootstrap")
    runtime = SimpleNamespace(new_context=object(), settings=None)
    groups = by_dispatcher(bootstrap.subscriptions(runtime))
    assert [[s.topic for s in group] for group in groups] == EXPECTED[service]
