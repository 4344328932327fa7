"""Billing's per-account reads: 404 for an account billing never heard of, and lists paged with limit/next."""

import asyncio
import time

import pytest
from platform_runtime.client import PlatformClient

from tests.support.story import add_card, register

pytestmark = pytest.mark.e2e


async def status_becomes(client: PlatformClient, path: str, status: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (found := (await client.get("billing", path)).status_code) != status:
        assert time.monotonic() < deadline, f"{path} answers {found}, not {status}"
        await asyncio.sleep(0.1)


async def test_billing_answers_404_for_an_account_it_never_heard_of_and_pages_billing_methods(client):
    for path in ("/accounts/nobody-ever/transactions", "/accounts/nobody-ever/billing-methods"):
        assert (await client.get("billing", path)).status_code == 404
    freelancer = await register(client, "freelancer")  # billing hears of it from contracts' AccountRegistered
    await status_becomes(client, f"/accounts/{freelancer}/transactions", 200)
    assert (await client.get_json("billing", f"/accounts/{freelancer}/billing-methods")) == {"items": []}

    client_id = await register(client, "client")
    cards = [await add_card(client, client_id) for _ in range(3)]
    first = await client.get_json("billing", f"/accounts/{client_id}/billing-methods?limit=2")
    assert [m["billing_method_id"] for m in first["items"]] == cards[:2]
    second = await client.get("billing", f"/accounts/{client_id}/billing-methods?limit=2&next={first['next']}")
    assert [m["billing_method_id"] for m in second.json()["items"]] == cards[2:]
    assert "next" not in second.json()
    assert [m["primary"] for m in first["items"] + second.json()["items"]] == [False, False, True]
