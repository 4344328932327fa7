"""The read API's bearer-token middleware (platform_runtime/http_auth.py) on an app built by base_app, in process,
and the scope table (read_scopes.py) against every route of the four services."""

import contextlib
import hashlib

import httpx
import pytest
from fastapi import APIRouter
from platform_runtime.http import base_app, routes_without_scope, served_paths
from platform_runtime.http_auth import TokenHashes, hash_token
from platform_runtime.read_scopes import PRINCIPAL_SCOPES, ROUTE_SCOPES, SCOPES
from platform_runtime.service import build_runtime, create_app
from platform_runtime.settings import ServiceSettings

pytestmark = pytest.mark.unit

TOKENS = {"integrator": "integrator-token-0123456789abcdef", "admin": "admin-token-0123456789abcdef",
          "analytics": "analytics-token-0123456789abcdef"}
HASHES = ",".join(f"{p}={hash_token(t)}" for p, t in TOKENS.items())


@contextlib.asynccontextmanager
async def no_lifespan(app):
    yield


def billing_like_app(hashes: str = HASHES):
    """base_app as billing's: one personal route, one aggregate route."""
    app = base_app("billing", no_lifespan, TokenHashes.parse(hashes))
    router = APIRouter()

    @router.get("/accounts/{account_id}/billing-methods")
    async def methods(account_id: str) -> dict:
        return {"items": [], "account_id": account_id}

    @router.get("/bonus-batches")
    async def batches() -> dict:
        return {"items": []}

    app.include_router(router)
    return app


async def call(path: str, token: str | None = None, app=None, headers: dict | None = None) -> httpx.Response:
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    transport = httpx.ASGITransport(app=app or billing_like_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get(path, headers=headers)


async def test_a_request_without_a_token_is_401_with_a_bearer_challenge():
    response = await call("/accounts/a-1/billing-methods")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json() == {"error": "unauthorized", "message": "a bearer token is required"}


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Basic YWRtaW46YWRtaW4=", "Bearer", "bearer  ",
                                    f"Token {TOKENS['admin']}", "Bearer " + "x" * 10_000])
async def test_a_wrong_or_malformed_token_is_401(header):
    response = await call("/accounts/a-1/billing-methods", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthorized"


async def test_the_scheme_is_case_insensitive():
    response = await call("/bonus-batches", headers={"Authorization": f"bearer {TOKENS['analytics']}"})
    assert response.status_code == 200


@pytest.mark.parametrize("principal", ["integrator", "admin"])
async def test_integrator_and_admin_read_personal_data(principal):
    response = await call("/accounts/a-1/billing-methods", TOKENS[principal])
    assert response.status_code == 200, response.text
    assert response.json()["account_id"] == "a-1"


async def test_analytics_is_403_on_personal_data_and_reads_aggregates():
    refused = await call("/accounts/a-1/billing-methods", TOKENS["analytics"])
    assert refused.status_code == 403
    assert refused.json() == {"error": "forbidden",
                              "message": "analytics may not read /accounts/{account_id}/billing-methods"}
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert (await call("/bonus-batches", TOKENS["analytics"])).status_code == 200


@pytest.mark.parametrize("path", ["/health/live", "/metrics"])
async def test_health_and_metrics_need_no_token(path):
    assert (await call(path)).status_code == 200


async def test_the_asyncapi_document_needs_a_token_of_any_principal():
    assert (await call("/asyncapi")).status_code == 401
    for token in TOKENS.values():
        assert (await call("/asyncapi", token)).status_code == 200


async def test_an_unknown_path_needs_a_token_before_it_is_404():
    assert (await call("/no/such/path")).status_code == 401
    assert (await call("/no/such/path", TOKENS["analytics"])).status_code == 404


async def test_no_swagger_pages():
    assert (await call("/docs", TOKENS["admin"])).status_code == 404


async def test_with_no_hashes_configured_every_token_is_refused():
    app = billing_like_app("")
    for token in TOKENS.values():
        assert (await call("/bonus-batches", token, app=app)).status_code == 401
    assert (await call("/health/live", app=app)).status_code == 200


async def test_a_route_missing_from_the_scope_table_is_read_by_nobody():
    app = billing_like_app()
    router = APIRouter()

    @router.get("/forgotten")
    async def forgotten() -> dict:
        return {}

    app.include_router(router)
    assert routes_without_scope(app, "billing") == ["/forgotten"]
    for token in TOKENS.values():
        assert (await call("/forgotten", token, app=app)).status_code == 403


def test_two_hashes_of_one_principal_both_work_while_its_token_is_rotated():
    hashes = TokenHashes.parse(f"admin={hash_token('old-token')} admin={hash_token('new-token')}")
    assert hashes.principal_of("old-token") == hashes.principal_of("new-token") == "admin"
    assert hashes.principal_of("other") is None


@pytest.mark.parametrize("text, problem", [("root=" + "0" * 64, "unknown principal"),
                                           ("admin=abc", "64 hex digits"), ("admin", "64 hex digits")])
def test_bad_token_hashes_are_refused_when_read(text, problem):
    with pytest.raises(ValueError, match=problem):
        TokenHashes.parse(text)
    with pytest.raises(ValueError, match=problem):
        ServiceSettings(database_url="postgresql+asyncpg://x@127.0.0.1:1/x", http_port=1, http_token_hashes=text)


def test_the_setting_holds_the_sha256_of_the_token_not_the_token():
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()
    assert TOKENS["admin"] not in HASHES


def test_every_scope_in_the_table_is_one_a_principal_can_hold():
    used = {scope for routes in ROUTE_SCOPES.values() for scope in routes.values()}
    assert used <= set(SCOPES)
    assert PRINCIPAL_SCOPES["integrator"] == PRINCIPAL_SCOPES["admin"] == set(SCOPES)
    assert "personal" not in PRINCIPAL_SCOPES["analytics"]


def service_apps():
    from billing.bootstrap import definition as billing
    from contracts.bootstrap import definition as contracts
    from escrow.bootstrap import definition as escrow
    from notifications.bootstrap import definition as notifications

    for definition in (contracts, escrow, billing, notifications):
        settings = definition.settings_type(database_url="postgresql+asyncpg://x@127.0.0.1:1/x", http_port=1)
        yield definition.name, create_app(definition, build_runtime(definition, settings))


def test_every_route_of_every_service_has_a_scope_and_every_scoped_route_exists():
    served: dict[str, set[str]] = {}
    for name, app in service_apps():  # create_app itself refuses a route without a scope
        assert routes_without_scope(app, name) == []
        served[name] = served_paths(app)
    for service, routes in ROUTE_SCOPES.items():
        for path in routes:
            assert any(path in paths for paths in served.values()) if service == "*" else path in served[service], \
                f"{service} {path} is in the scope table but no service serves it"
