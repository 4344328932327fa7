"""Who may read what over HTTP: the principals' scopes and each route's scope, as data (the one place).

A route's scope follows from what it returns:
- `personal`: about one person, account or contract (names, emails, billing methods, histories, statements,
  balances, notifications), or a list that names people or carries free text they wrote (disputes, sagas,
  open gateway work, a bonus batch's failed charges, the ledger check's problem lines, which name accounts
  and their balances);
- `aggregate`: platform-wide figures that name no one (the bonus batches' counts and progress);
- `commands`: what became of a command (`/commands/{id}`): its outcome is the sender's business, and only
  the principals that may send commands have it;
- `schema`: the wire contract (`/asyncapi`, `/openapi.json`), which any principal may read.
`/health/*` and `/metrics` need no token (probes and Prometheus); every other path needs one.
The README's "Read API: authentication" shows this table; tests/unit/test_read_scopes.py checks that every
route of every service is in it, and tests/e2e/test_http_auth.py asks the running services.
"""

from types import MappingProxyType

PERSONAL, AGGREGATE, COMMANDS, SCHEMA = "personal", "aggregate", "commands", "schema"
SCOPES = (PERSONAL, AGGREGATE, COMMANDS, SCHEMA)

# Other back ends and the operators read everything; analytics (which reads the event topics for figures)
# reads nothing personal. No service calls another's HTTP API, so services have no read principal.
PRINCIPAL_SCOPES: MappingProxyType[str, frozenset[str]] = MappingProxyType({
    "integrator": frozenset(SCOPES),
    "admin": frozenset(SCOPES),
    "analytics": frozenset({AGGREGATE, SCHEMA}),
})
PRINCIPALS = tuple(PRINCIPAL_SCOPES)

# Paths that take no token: liveness and readiness probes, Prometheus.
PUBLIC_PREFIXES = ("/health/",)
PUBLIC_PATHS = frozenset({"/metrics"})

# Every service's routes (FastAPI path templates) -> scope; "*" holds the routes several services share.
ROUTE_SCOPES: MappingProxyType[str, MappingProxyType[str, str]] = MappingProxyType({
    "*": MappingProxyType({
        "/asyncapi": SCHEMA,
        "/openapi.json": SCHEMA,
        "/commands/{command_id}": COMMANDS,
    }),
    "contracts": MappingProxyType({
        "/contracts/{contract_id}": PERSONAL,
        "/contracts/{contract_id}/statement": PERSONAL,
        "/accounts/{account_id}": PERSONAL,
        "/accounts/{account_id}/upcoming": PERSONAL,
        "/disputes": PERSONAL,
        "/reactivation-requests": PERSONAL,
        "/sagas": PERSONAL,
    }),
    "escrow": MappingProxyType({
        "/escrow/{contract_id}": PERSONAL,
        "/accounts/{account_id}/balance": PERSONAL,
        "/ledger/check": PERSONAL,
    }),
    "billing": MappingProxyType({
        "/accounts/{account_id}/transactions": PERSONAL,
        "/accounts/{account_id}/billing-methods": PERSONAL,
        "/gateway-work": PERSONAL,
        "/bonuses/{bonus_id}": PERSONAL,
        "/bonus-batches": AGGREGATE,
        "/bonus-batches/{business_date}": PERSONAL,  # a completed batch lists failed charges by client
        "/bonus-batches/{business_date}/failures": PERSONAL,
    }),
    "notifications": MappingProxyType({
        "/accounts/{account_id}/notifications": PERSONAL,
    }),
})


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def scope_of(service: str, route_path: str) -> str | None:
    """The scope a route needs; None for a route missing from the table (nobody may read it)."""
    return ROUTE_SCOPES.get(service, {}).get(route_path) or ROUTE_SCOPES["*"].get(route_path)


def may_read(principal: str, scope: str | None) -> bool:
    return scope is not None and scope in PRINCIPAL_SCOPES.get(principal, ())
