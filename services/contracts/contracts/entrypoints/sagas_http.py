"""Stuck work, visible: GET /sagas?status=needs_attention|running&older_than=PT5M&kind=fund (paged with
limit/next, the longest waiting first)."""

from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import TypeAdapter, ValidationError

from platform_runtime.settings import Duration

from ..adapters.repositories import SagaRepository
from ..domain.sagas import Saga

_DURATION = TypeAdapter(Duration)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _item(saga: Saga) -> dict:
    return {"saga_id": saga.saga_id, "kind": saga.kind, "status": saga.status, "step": saga.step,
            "attempts": saga.attempts(), "contract_id": saga.contract_id, "command_id": saga.command_id,
            "created_at": _iso(saga.created_at), "updated_at": _iso(saga.updated_at),
            "data": saga.data.model_dump(mode="json"), "step_log": saga.step_log}


def _cursor(value: str | None) -> tuple[datetime, str] | None:
    if not value:
        return None
    moved, _, saga_id = value.rpartition("~")
    try:
        return datetime.fromisoformat(moved), saga_id
    except ValueError:
        raise HTTPException(400, {"error": "invalid_data", "message": "next is not a cursor of this list"}) from None


def router() -> APIRouter:
    api = APIRouter()

    @api.get("/sagas")
    async def sagas(request: Request, status: Literal["running", "needs_attention"] = "needs_attention",
                    older_than: str = "PT0S", kind: Literal["fund", "release", "refund"] | None = None,
                    limit: int = Query(100, ge=1, le=1000), next: str | None = None) -> dict:
        """Sagas in this status that have not moved for `older_than` (ISO 8601 or seconds), longest first."""
        try:
            age: timedelta = _DURATION.validate_python(older_than)
        except ValidationError:
            raise HTTPException(400, {"error": "invalid_data", "message": "older_than is a duration: PT5M"}) from None
        runtime = request.app.state.runtime
        async with runtime.session_factory() as session:
            found = await SagaRepository(session).waiting(status, runtime.clock.now() - age, limit, _cursor(next),
                                                       kind)
        body: dict = {"items": [_item(s) for s in found]}
        if len(found) == limit:
            body["next"] = f"{found[-1].updated_at.isoformat()}~{found[-1].saga_id}"
        return body

    return api
