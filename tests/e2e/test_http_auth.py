"""The read API's 401/403 matrix, asked of the running services: every route of every service (as their apps
declare them) x {no token, a bad token, integrator, admin, analytics} -> the status the README promises.

The expected matrix is written here, apart from the scope table the services enforce (read_scopes.py), so a
change to that table that the README does not promise fails here.
"""

import asyncio
import re

import httpx
import pytest
from platform_runtime.credentials import Credentials
from platform_runtime.http import served_paths
from platform_runtime.service import build_runtime, create_app

from tests.support.processes import TEST_PORTS

pytestmark = pytest.mark.e2e

PUBLIC = {"/health/live", "/health/ready", "/metrics"}
# What analytics may read: the wire contract and figures that name no one.
ANALYTICS_READS = {"/asyncapi", "/openapi.json", "/bonus-batches"}
SAMPLE = {"business_date": "2026-01-01"}  # a path parameter's value; any other is an id no one has
CALLERS = ("no token", "bad token", "integrator", "admin", "analytics")


def served_routes() -> dict[str, list[str]]:
    """service -> every path template its app serves (built in this process, not started)."""
    from billing.bootstrap import definition as billing
    from contracts.bootstrap import definition as contracts
    from escrow.bootstrap import definition as escrow
    from notifications.bootstrap import definition as notifications

    routes = {}
    for definition in (contracts, escrow, billing, notifications):
        settings = definition.settings_type(database_url="postgresql+asyncpg://x@127.0.0.1:1/x", http_port=1)
        routes[definition.name] = sorted(served_paths(create_app(definition, build_runtime(definition, settings))))
    return routes


def expected(caller: str, route: str) -> str:
    if route in PUBLIC:
        return "open"
    if caller in ("no token", "bad token"):
        return "401"
    if caller == "analytics" and route not in ANALYTICS_READS:
        return "403"
    return "read"  # past authentication and authorization: 200, or 404 for an id no one has


def outcome(response: httpx.Response) -> str:
    if response.status_code in (401, 403):
        body = response.json()
        assert body["error"] == {401: "unauthorized", 403: "forbidden"}[response.status_code], body
        assert response.headers["www-authenticate"].startswith("Bearer"), response.headers
        return str(response.status_code)
    assert response.status_code in (200, 404), (response.status_code, response.text[:300])
    if response.status_code == 404:
        assert response.json()["error"] == "not_found", response.text[:300]
    return "read"


async def test_every_route_of_every_service_answers_each_caller_as_the_readme_says(platform):
    tokens = {name: (await asyncio.to_thread(Credentials.local, name)).http_token
              for name in ("integrator", "admin", "analytics")}
    headers = {"no token": {}, "bad token": {"Authorization": "Bearer not-a-token-of-anyone"},
               **{name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}}
    routes = served_routes()
    assert set(routes) == set(TEST_PORTS)

    async with httpx.AsyncClient(timeout=30) as http:
        async def ask(service: str, route: str, caller: str) -> tuple[str, str, str, str, str]:
            path = re.sub(r"\{(\w+)\}", lambda m: SAMPLE.get(m[1], f"no-such-{m[1]}"), route)
            response = await http.get(f"http://127.0.0.1:{TEST_PORTS[service]}{path}", headers=headers[caller])
            found = "open" if route in PUBLIC and response.status_code == 200 else outcome(response)
            return service, route, caller, found, expected(caller, route)

        cells = await asyncio.gather(*(ask(service, route, caller) for service, paths in routes.items()
                                       for route in paths for caller in CALLERS))
    wrong = [cell for cell in cells if cell[3] != cell[4]]
    assert not wrong, "\n".join(f"{s} {r} as {c}: {found}, expected {want}" for s, r, c, found, want in wrong)
    # The matrix covered what it should: every service's data routes, each refused to analytics at least once.
    assert len(cells) == sum(len(p) for p in routes.values()) * len(CALLERS) > 100
    assert {s for s, r, c, found, _ in cells if c == "analytics" and found == "403"} == set(TEST_PORTS)


async def test_an_unknown_path_is_401_without_a_token_and_404_with_one(platform):
    token = (await asyncio.to_thread(Credentials.local, "analytics")).http_token
    async with httpx.AsyncClient(timeout=30) as http:
        url = f"http://127.0.0.1:{TEST_PORTS['escrow']}/no/such/path"
        assert (await http.get(url)).status_code == 401
        assert (await http.get(url, headers={"Authorization": f"Bearer {token}"})).status_code == 404


async def test_the_integrator_reads_real_personal_data_and_analytics_is_refused_it(client):
    from tests.support.story import add_card, register

    account_id = await register(client, "client")
    await add_card(client, account_id)
    analytics = await asyncio.to_thread(Credentials.local, "analytics")
    methods = await client.get_json("billing", f"/accounts/{account_id}/billing-methods")
    assert len(methods["items"]) == 1
    async with httpx.AsyncClient(timeout=30, headers=analytics.http_headers()) as http:
        refused = await http.get(f"http://127.0.0.1:{TEST_PORTS['billing']}/accounts/{account_id}/billing-methods")
        assert refused.status_code == 403
        assert refused.json() == {"error": "forbidden",
                                  "message": "analytics may not read /accounts/{account_id}/billing-methods"}
        batches = await http.get(f"http://127.0.0.1:{TEST_PORTS['billing']}/bonus-batches")
        assert batches.status_code == 200 and "items" in batches.json()
