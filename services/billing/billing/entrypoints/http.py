"""Billing's read side: transaction history (JSON or CSV) and billing methods."""

import csv
import io
from datetime import datetime

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from ..adapters.repository import BillingRepository
from ..adapters.tables import billing_methods

HISTORY_FIELDS = ["transaction_id", "occurred_at", "kind", "description", "amount", "currency", "contract_id",
                  "milestone_id", "bonus_id", "available_at"]
KINDS = {"fixed_price_charge", "bonus_charge", "refund", "escrow_release", "payment", "fixed_price_earning",
         "bonus_earning"}


def _item(row: dict) -> dict:
    item = {k: row[k] for k in HISTORY_FIELDS if row[k] is not None}
    for moment in ("occurred_at", "available_at"):
        if row[moment] is not None:
            item[moment] = row[moment].isoformat().replace("+00:00", "Z")
    return item


def router() -> APIRouter:
    api = APIRouter()

    @api.get("/accounts/{account_id}/transactions", response_model=None)
    async def transactions(account_id: str, request: Request, from_: datetime | None = Query(None, alias="from"),
                           to: datetime | None = None, kind: str | None = None, format: str = "json",
                           limit: int = Query(100, ge=1, le=1000), next: str | None = None) -> Response | dict:
        if kind and kind not in KINDS:
            raise HTTPException(400, f"kind must be one of {sorted(KINDS)}")
        after = int(next) if next and next.isdigit() else None
        async with request.app.state.runtime.session_factory() as session:
            rows = await BillingRepository(session).history(account_id, from_, to, kind, after,
                                                            limit if format == "json" else 1_000_000)
        items = [_item(r) for r in rows]
        if format == "csv":
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=HISTORY_FIELDS)
            writer.writeheader()
            writer.writerows(items)
            return Response(out.getvalue(), media_type="text/csv", headers={
                "content-disposition": f'attachment; filename="{account_id}-transactions.csv"'})
        body: dict = {"items": items}
        if len(rows) == limit:
            body["next"] = str(rows[-1]["seq"])
        return body

    @api.get("/accounts/{account_id}/billing-methods")
    async def methods(account_id: str, request: Request) -> dict:
        async with request.app.state.runtime.session_factory() as session:
            rows = await session.execute(select(billing_methods).where(
                billing_methods.c.account_id == account_id, billing_methods.c.removed_at.is_(None))
                .order_by(billing_methods.c.added_at))
        return {"items": [{"billing_method_id": r.billing_method_id, "kind": r.kind, "primary": r.is_primary,
                           "added_at": r.added_at.isoformat()} for r in rows]}

    return api
