"""Bearer tokens on the read API: one ASGI middleware and one app-wide dependency, both added by base_app.

A service knows its callers' tokens only by their SHA-256 (the HTTP_TOKEN_HASHES setting), so a leaked
configuration does not leak a token. A request to any path but /health/* and /metrics needs
`Authorization: Bearer <token>`: none, or one that matches no hash, is answered 401 (with
`WWW-Authenticate: Bearer`), by the middleware before any routing, so an unknown path needs a valid
token too before it answers 404. Once a route is chosen, the dependency answers 403 to a principal whose
scopes (read_scopes.py) lack the route's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from prometheus_client import Counter
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from . import logging as logs
from .read_scopes import PRINCIPALS, is_public, may_read, scope_of

log = logs.get_logger(__name__)
REFUSED = Counter("http_requests_refused_total", "Read API requests refused: 401 no or bad token, 403 no scope",
                  ["status"])

_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_TOKEN_LENGTH = 512  # longer is no token of ours; refused before hashing
PRINCIPAL = "principal"  # where the middleware leaves the caller's principal (request.state.principal)


def hash_token(token: str) -> str:
    """What HTTP_TOKEN_HASHES holds for a token: its SHA-256, hex. The tokens are long random strings
    (deploy/local/secrets.sh: 32 of [A-Za-z0-9], ~190 bits), so an unsalted hash cannot be reversed."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenHashes:
    """principal -> SHA-256 of its token(s); a principal may have two while its token is rotated."""

    entries: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def parse(cls, text: str) -> TokenHashes:
        """`integrator=<hex>,admin=<hex>,analytics=<hex>` (commas or whitespace between entries)."""
        entries = []
        for item in re.split(r"[,\s]+", text.strip()):
            if not item:
                continue
            principal, _, digest = item.partition("=")
            if principal not in PRINCIPALS:
                raise ValueError(f"HTTP_TOKEN_HASHES: unknown principal {principal!r} (known: {', '.join(PRINCIPALS)})")
            if not _HEX_SHA256.fullmatch(digest.lower()):
                raise ValueError(f"HTTP_TOKEN_HASHES: {principal}'s hash must be 64 hex digits (SHA-256 of the token)")
            entries.append((principal, bytes.fromhex(digest)))
        return cls(tuple(entries))

    def principal_of(self, token: str | None) -> str | None:
        """Whose token this is; every stored hash is compared, each in constant time."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for principal, stored in self.entries:
            if hmac.compare_digest(digest, stored) and found is None:
                found = principal
        return found


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if kind.lower() == "bearer" else None
    return None


def realm(service: str) -> str:
    return f'Bearer realm="escrow-{service}"'


def _refusal(status: int, error: str, message: str, challenge: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status,
                        headers={"WWW-Authenticate": challenge})


class Forbidden(Exception):
    def __init__(self, principal: str, route: str, scope: str | None) -> None:
        self.principal, self.route, self.scope = principal, route, scope


class BearerAuth:
    """ASGI middleware, added once by base_app: whose token is it (401 when no one's), before any routing."""

    def __init__(self, app: ASGIApp, service: str, tokens: TokenHashes) -> None:
        self.app, self.tokens = app, tokens
        self.realm = realm(service)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        principal = self.tokens.principal_of(token)
        if principal is None:
            REFUSED.labels("401").inc()
            log.info("http_refused", status=401, method=scope["method"], token_given=token is not None)
            if token is None:
                response = _refusal(401, "unauthorized", "a bearer token is required", self.realm)
            else:
                response = _refusal(401, "unauthorized", "the bearer token is not valid",
                                    f'{self.realm}, error="invalid_token"')
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL] = principal
        await self.app(scope, receive, send)


def scope_check(service: str) -> Callable[[Request], Awaitable[None]]:
    """The app-wide dependency that runs once a route is chosen: may the caller read it (403 when not)?
    A route missing from read_scopes.py's table is read by nobody."""

    async def may_read_route(request: Request) -> None:
        route = request.scope["route"].path
        if is_public(route):
            return
        principal = request.scope["state"][PRINCIPAL]
        needed = scope_of(service, route)
        if not may_read(principal, needed):
            REFUSED.labels("403").inc()
            log.info("http_refused", status=403, route=route, principal=principal)
            raise Forbidden(principal, route, needed)

    return may_read_route


def forbidden_response(service: str, error: Forbidden) -> JSONResponse:
    return _refusal(403, "forbidden", f"{error.principal} may not read {error.route}",
                    f'{realm(service)}, error="insufficient_scope", scope="{error.scope or "none"}"')
