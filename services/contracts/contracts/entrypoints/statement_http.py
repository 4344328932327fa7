"""`GET /contracts/{id}/statement`: JSON, or CSV with `Accept: text/csv`."""

import csv
import io

from fastapi import APIRouter, Request
from fastapi.responses import Response

from platform_runtime.http import NotFound

from ..adapters.bonus_repository import BonusRepository
from ..adapters.repositories import ContractRepository
from ..adapters.statement_repository import StatementRepository
from ..domain import statement

AMOUNTS = ("amount", "funded", "released", "refunded", "in_escrow", "pending", "available")
DATES = ("funded_at", "released_at", "refunded_at", "available_at")
CSV_FIELDS = ("item", "id", "title", *AMOUNTS, *DATES)


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _line(line: statement.Line) -> dict:
    return {"item": line.item_kind, "id": line.item_id, "title": line.title,
            **{a: getattr(line, a) for a in AMOUNTS}, **{d: _iso(getattr(line, d)) for d in DATES}}


def _csv(found: statement.Statement) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(_line(line) for line in found.lines)
    writer.writerow({"item": "total", "id": found.contract_id, "title": found.currency,
                     "amount": "", **found.totals()})
    return out.getvalue()


def router() -> APIRouter:
    api = APIRouter()

    @api.get("/contracts/{contract_id}/statement", response_model=None)
    async def contract_statement(contract_id: str, request: Request) -> dict | Response:
        async with request.app.state.runtime.session_factory() as session:
            contract = await ContractRepository(session).get(contract_id, lock=False)
            if contract is None:
                raise NotFound(f"contract {contract_id}")
            bonuses = await BonusRepository(session).of_contract(contract_id)
            movements = await StatementRepository(session).of_contract(contract_id)
        found = statement.build(contract_id, contract.currency,
                                [(m.milestone_id, m.title, m.amount) for m in contract.live_milestones],
                                [(b.bonus_id, b.note, b.amount) for b in bonuses], movements)
        if "text/csv" in request.headers.get("accept", ""):
            return Response(_csv(found), media_type="text/csv", headers={
                "content-disposition": f'attachment; filename="{contract_id}-statement.csv"'})
        totals = found.totals()
        return {"contract_id": contract_id, "currency": found.currency, "client_id": contract.client_id,
                "freelancer_id": contract.freelancer_id, "items": [_line(line) for line in found.lines],
                "totals": {"paid_by_client": totals["funded"], **totals}}

    return api
