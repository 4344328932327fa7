"""Billing's read side: transaction history (JSON or CSV) and billing methods."""

import csv
import io
from datetime import datetime

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from platform_runtime.http import NotFound

from ..adapters.repository import BillingRepository

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


async def _known(repo: BillingRepository, account_id: str) -> None:
    if not await repo.knows_account(account_id):
        raise NotFound(f"account {account_id}")


def _method_cursor(value: str | None) -> tuple[datetime, str] | None:
    """`<added_at>~<billing method id>` of the last item of the previous page (ids never contain `~`)."""
    if not value:
        return None
    added_at, _, method_id = value.partition("~")
    try:
        return datetime.fromisoformat(added_at), method_id
    except ValueError:
        raise HTTPException(400, "next must be the value a previous page gave") from None


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
            repo = BillingRepository(session)
            await _known(repo, account_id)
            rows = await repo.history(account_id, from_, to, kind, after, limit if format == "json" else 1_000_000)
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
    async def methods(account_id: str, request: Request, limit: int = Query(100, ge=1, le=1000),
                      next: str | None = None) -> dict:
        async with request.app.state.runtime.session_factory() as session:
            repo = BillingRepository(session)
            await _known(repo, account_id)
            rows = await repo.methods_page(account_id, _method_cursor(next), limit)
        body: dict = {"items": [{"billing_method_id": r["billing_method_id"], "kind": r["kind"],
                                 "primary": r["is_primary"], "added_at": r["added_at"].isoformat()} for r in rows]}
        if len(rows) == limit:
            last = rows[-1]
            body["next"] = f"{last['added_at'].isoformat().replace('+00:00', 'Z')}~{last['billing_method_id']}"
        return body

    return api
