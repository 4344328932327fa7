"""After every end-to-end test on the platform: every saga is in a final state, the ledger check is
clean, and what clients paid equals what escrow holds plus what was released plus what was refunded."""

import pytest_asyncio

from tests.support.checks import every_saga_ends, ledger_is_clean, platform_money_adds_up

LAST = "test_logs_keep_secrets"  # reads what the whole run logged


def pytest_collection_modifyitems(items):
    """The log check goes last; a stable sort, so the others keep their order."""
    items.sort(key=lambda item: getattr(getattr(item, "module", None), "__name__", "").endswith(LAST))


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def every_saga_ends_and_the_books_balance(request):
    yield
    if "platform" not in request.fixturenames or "client" not in request.fixturenames:
        return
    platform, client = request.getfixturevalue("platform"), request.getfixturevalue("client")
    await every_saga_ends(platform)
    await ledger_is_clean(client)
    await platform_money_adds_up(platform)
