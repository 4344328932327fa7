"""Billing's read side of the bonus batch: a batch's figures and progress, one bonus as billing knows it."""

from datetime import date

from fastapi import APIRouter, Query, Request

from platform_runtime.http import NotFound

from ..adapters.bonus_repository import BonusRepository
from ..domain.bonus_batch_states import SETTLED_BONUS, BatchStatus
from ..service_layer.bonus_progress import ProgressCounts
from .listing import created_before, iso



def router(progress: ProgressCounts) -> APIRouter:
    """`progress`: a running batch's counts, shared by every request to this process and its batch runner."""
    api = APIRouter()

    @api.get("/bonus-batches")
    async def bonus_batches(request: Request, status: BatchStatus | None = None, older_than: str | None = None,
                            limit: int = Query(100, ge=1, le=1000), next: date | None = None) -> dict:
        """Batches by business day: `status=collecting|charging|completed`, `older_than=PT5M` (started before)."""
        runtime = request.app.state.runtime
        before = created_before(runtime.clock.now(), older_than)
        async with runtime.session_factory() as session:
            rows = await BonusRepository(session).batches(status, before, limit, next)
        body: dict = {"items": [{"business_date": r["business_date"].isoformat(), "status": r["status"],
                                 "bonuses": r["bonuses"], "paid": r["paid"], "failed": r["failed"],
                                 "started_at": iso(r["started_at"]), "completed_at": iso(r["completed_at"])}
                                for r in rows]}
        if len(rows) == limit:
            body["next"] = rows[-1]["business_date"].isoformat()
        return body

    @api.get("/bonus-batches/{business_date}")
    async def bonus_batch(business_date: date, request: Request) -> dict:
        async with request.app.state.runtime.session_factory() as session:
            repo = BonusRepository(session)
            batch = await repo.batch(business_date)
            if batch is None:
                raise NotFound(f"bonus batch {business_date}")
            body = {"business_date": business_date.isoformat(), "status": batch["status"],
                    "cutoff": iso(batch["cutoff"]), "started_at": iso(batch["started_at"]),
                    "completed_at": iso(batch["completed_at"])}
            if batch["status"] == BatchStatus.COMPLETED:
                progress.forget(business_date)
                return {**body, **{k: batch[k] for k in ("bonuses", "paid", "failed", "totals", "failures")},
                        "past_due": batch["past_due"] or 0,
                        "processed": batch["bonuses"]}
            counts, age = await progress.get(business_date, lambda: repo.progress(business_date))
        # Still running: the figures so far, counted `progress_age_seconds` ago (bonus_progress.py).
        return {**body, "bonuses": sum(counts.values()), "paid": counts.get("paid", 0),
                "failed": counts.get("failed", 0), "totals": None,
                "processed": sum(counts.get(s, 0) for s in SETTLED_BONUS), "by_status": counts,
                "progress_age_seconds": round(age, 1)}

    @api.get("/bonus-batches/{business_date}/failures")
    async def bonus_batch_failures(business_date: date, request: Request, limit: int = Query(100, ge=1, le=1000),
                                   after: str | None = Query(None, max_length=64)) -> dict:
        """Every failed client charge of a batch, a page at a time (the event lists only the first 100)."""
        async with request.app.state.runtime.session_factory() as session:
            repo = BonusRepository(session)
            if await repo.batch(business_date) is None:
                raise NotFound(f"bonus batch {business_date}")
            items = await repo.failed_charges(business_date, after, limit)
        body: dict = {"items": items}
        if len(items) == limit:
            body["next"] = items[-1]["charge_id"]
        return body

    @api.get("/bonuses/{bonus_id}")
    async def bonus(bonus_id: str, request: Request) -> dict:
        async with request.app.state.runtime.session_factory() as session:
            found = await BonusRepository(session).bonus(bonus_id)
        if found is None:
            raise NotFound(f"bonus {bonus_id}")
        body = {k: found[k] for k in ("bonus_id", "contract_id", "client_id", "freelancer_id", "amount", "currency",
                                      "status", "charge_id", "reason_code", "message") if found[k] is not None}
        body.update(business_date=found["business_date"].isoformat(), given_at=iso(found["given_at"]),
                    batch_date=found["batch_date"].isoformat() if found["batch_date"] else None)
        return body

    return api
