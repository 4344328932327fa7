"""The contracts service's read side: contracts with their milestones, and accounts."""

from fastapi import APIRouter, Query, Request

from platform_runtime.http import NotFound

from ..adapters.bonus_repository import BonusRepository
from ..adapters.repositories import AccountRepository, ContractRepository
from ..adapters.upcoming_repository import UpcomingRepository
from ..service_layer.upcoming import as_wire, upcoming_for


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _bonus(bonus) -> dict:
    item = {"bonus_id": bonus.bonus_id, "amount": bonus.amount, "currency": bonus.currency, "note": bonus.note,
            "status": bonus.status, "business_date": bonus.business_date.isoformat(), "given_at": _iso(bonus.given_at)}
    if bonus.reason_code:
        item["reason_code"] = bonus.reason_code
    if bonus.settled_at:
        item["settled_at"] = _iso(bonus.settled_at)
    return item


def router() -> APIRouter:
    api = APIRouter()

    @api.get("/contracts/{contract_id}")
    async def contract(contract_id: str, request: Request) -> dict:
        async with request.app.state.runtime.session_factory() as session:
            repo = ContractRepository(session)
            found = await repo.get(contract_id, lock=False)  # a read never waits for (or blocks) a writer
            if found is None:
                raise NotFound(f"contract {contract_id}")
            history = await repo.history([m.milestone_id for m in found.live_milestones])
            bonuses = [_bonus(b) for b in await BonusRepository(session).of_contract(contract_id)]
        milestones = []
        for m in found.live_milestones:
            item = {"milestone_id": m.milestone_id, "title": m.title, "amount": m.amount, "status": m.status,
                    "due_date": m.due_date.isoformat() if m.due_date else None,
                    "released_amount": m.released_amount, "refunded_amount": m.refunded_amount,
                    "history": history[m.milestone_id]}
            if m.review_due_at:
                item["review_due_at"] = _iso(m.review_due_at)
            if m.respond_by:
                item["respond_by"] = _iso(m.respond_by)
            milestones.append(item)
        return {"contract_id": found.contract_id, "status": found.status, "title": found.title,
                "client_id": found.client_id, "freelancer_id": found.freelancer_id, "currency": found.currency,
                "deposit": found.deposit, "escrow_held": found.escrow_held, "created_at": _iso(found.created_at),
                "ended_at": _iso(found.ended_at), "milestones": milestones, "bonuses": bonuses}

    @api.get("/accounts/{account_id}")
    async def account(account_id: str, request: Request) -> dict:
        async with request.app.state.runtime.session_factory() as session:
            found = await AccountRepository(session).get(account_id)
        if found is None:
            raise NotFound(f"account {account_id}")
        body = {"account_id": found.account_id, "role": found.role, "name": found.name, "status": found.status}
        if found.status_reason:
            body["status_reason"] = found.status_reason
        if found.appealable is not None:
            body["appealable"] = found.appealable
        if found.reactivation_requested:
            body["reactivation_requested"] = True
        if found.past_due:
            body["past_due"] = found.past_due
        return body

    @api.get("/accounts/{account_id}/upcoming")
    async def coming_up(account_id: str, request: Request, limit: int = Query(100, ge=1, le=1000)) -> dict:
        """Every dated thing ahead of the person across their contracts, soonest first (the first `limit`)."""
        runtime = request.app.state.runtime
        async with runtime.session_factory() as session:
            if await AccountRepository(session).get(account_id) is None:
                raise NotFound(f"account {account_id}")
            items = await upcoming_for(UpcomingRepository(session), account_id, runtime.clock.now(),
                                       runtime.settings, limit)
        return {"account_id": account_id, "items": [item.model_dump(mode="json", exclude_none=True)
                                                    for item in as_wire(items)]}

    return api
