"""Notifications' read side: a person's in-app list (every channel, with its delivery status), newest first."""

from datetime import datetime

from fastapi import APIRouter, Query, Request

from platform_runtime.http import NotFound

from ..adapters.repository import NotificationRepository


def _timestamp(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _item(row: dict) -> dict:
    item = {
        "notification_id": row["notification_id"], "kind": row["kind"], "channel": row["channel"],
        "subject": row["subject"], "body": row["body_text"], "created_at": _timestamp(row["created_at"]),
        "status": row["status"], "event_id": row["event_id"], "attempts": row["attempts"],
    }
    if row["contract_id"]:
        item["contract_id"] = row["contract_id"]
    if row["delivered_at"]:
        item["delivered_at"] = _timestamp(row["delivered_at"])
    if row["status"] == "failed":
        item["error"] = row["last_error"]
    return item


def router() -> APIRouter:
    api = APIRouter()

    @api.get("/accounts/{account_id}/notifications")
    async def notifications_of(account_id: str, request: Request, limit: int = Query(50, ge=1, le=500),
                               next: str | None = None) -> dict:
        before = int(next) if next and next.isdigit() else None
        async with request.app.state.runtime.session_factory() as session:
            repo = NotificationRepository(session)
            rows = await repo.for_account(account_id, limit, before)
            if not rows and before is None and not await repo.knows_account(account_id):
                raise NotFound(f"account {account_id}")
        body: dict = {"items": [_item(r) for r in rows]}
        if len(rows) == limit:
            body["next"] = str(rows[-1]["seq"])
        return body

    return api
