"""Administrators' queues: open disputes and pending reactivation requests, oldest first, with their ages."""

from datetime import datetime

from fastapi import APIRouter, HTTPException, Query, Request

from ..adapters.queues import Cursor, DisputeRepository, pending_reactivation_requests
from ..domain.disputes import OPEN, RESOLVED


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _cursor(value: str | None) -> Cursor | None:
    """`<time>~<id>` of the last item of the previous page."""
    if not value:
        return None
    at, _, key = value.partition("~")
    try:
        return datetime.fromisoformat(at), key
    except ValueError:
        raise HTTPException(400, "next must be the value a previous page gave") from None


def _page(items: list[dict], limit: int, at: str, key: str) -> dict:
    body: dict = {"items": items}
    if len(items) == limit:
        body["next"] = f"{items[-1][at]}~{items[-1][key]}"
    return body


def router() -> APIRouter:
    api = APIRouter()

    @api.get("/disputes")
    async def disputes(request: Request, status: str = OPEN, limit: int = Query(100, ge=1, le=1000),
                       next: str | None = None) -> dict:
        if status not in (OPEN, RESOLVED):
            raise HTTPException(400, f"status must be {OPEN} or {RESOLVED}")
        runtime = request.app.state.runtime
        async with runtime.session_factory() as session:
            found = await DisputeRepository(session).page(status, _cursor(next), limit)
        now = runtime.clock.now()
        return _page([{
            "contract_id": d.contract_id, "milestone_id": d.milestone_id, "client_id": d.client_id,
            "freelancer_id": d.freelancer_id, "amount": d.amount, "currency": d.currency, "status": d.status,
            "opened_at": _iso(d.opened_at), "resolve_by": _iso(d.resolve_by), "overdue": d.overdue(now),
            "age_seconds": int(((d.resolved_at or now) - d.opened_at).total_seconds()),
            **({"resolved_at": _iso(d.resolved_at)} if d.resolved_at else {}),
        } for d in found], limit, "opened_at", "milestone_id")

    @api.get("/reactivation-requests")
    async def reactivation_requests(request: Request, status: str = "pending",
                                    limit: int = Query(100, ge=1, le=1000), next: str | None = None) -> dict:
        if status != "pending":
            raise HTTPException(400, "status must be pending (decided requests are the accounts' status)")
        runtime = request.app.state.runtime
        async with runtime.session_factory() as session:
            rows = await pending_reactivation_requests(session, _cursor(next), limit)
        now = runtime.clock.now()
        return _page([{
            "account_id": r["account_id"], "role": r["role"], "name": r["name"], "status": "pending",
            "suspension_reason": r["status_reason"], "requested_at": _iso(r["reactivation_requested_at"]),
            "age_seconds": int((now - r["reactivation_requested_at"]).total_seconds()),
        } for r in rows], limit, "requested_at", "account_id")

    return api
