"""The gateway's open work, for operators: pending charges and refunds, and refunds that need attention."""

from fastapi import APIRouter, HTTPException, Query, Request

from ..adapters.gateway_work_repository import GatewayWork, page_token, parse_page_token
from ..domain.gateway_work import OPEN
from .listing import created_before, iso

STATUSES = sorted({str(s) for statuses in OPEN.values() for s in statuses})


def _item(row: dict) -> dict:
    item = {k: row[k] for k in ("operation", "work_id", "saga_id", "contract_id", "client_id", "amount", "currency",
                                "status", "attempts", "last_error", "reason_code", "message") if row[k] is not None}
    item.update(created_at=iso(row["created_at"]), next_attempt_at=iso(row["next_attempt_at"]),
                give_up_at=iso(row["give_up_at"]))
    return item


def router() -> APIRouter:
    api = APIRouter()

    @api.get("/gateway-work")
    async def gateway_work(request: Request, status: str | None = None, older_than: str | None = None,
                           limit: int = Query(100, ge=1, le=1000), next: str | None = None) -> dict:
        """Open charges and refunds, oldest first: `status=pending|needs_attention`, `older_than=PT5M`."""
        if status is not None and status not in STATUSES:
            raise HTTPException(400, f"status must be one of {STATUSES}")
        try:
            after = parse_page_token(next) if next else None
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        runtime = request.app.state.runtime
        before = created_before(runtime.clock.now(), older_than)
        async with runtime.session_factory() as session:
            rows = await GatewayWork(session).open_work(status, before, limit, after)
        body: dict = {"items": [_item(r) for r in rows]}
        if len(rows) == limit:
            body["next"] = page_token(rows[-1])
        return body

    return api
