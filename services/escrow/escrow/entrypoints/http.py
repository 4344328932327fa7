"""Escrow's read side: a contract's escrow, and the ledger check recomputed from the postings."""

from fastapi import APIRouter, Request

from platform_runtime.http import NotFound

from ..adapters.earnings_repository import EarningsRepository
from ..adapters.ledger_repository import LedgerRepository
from ..domain import ledger


def router() -> APIRouter:
    api = APIRouter()

    @api.get("/escrow/{contract_id}")
    async def escrow_of(contract_id: str, request: Request) -> dict:
        async with request.app.state.runtime.session_factory() as session:
            currency, held = await LedgerRepository(session).escrow_of(contract_id)
        if currency is None:
            raise NotFound(f"escrow of contract {contract_id}")
        return {"contract_id": contract_id, "currency": currency, "balance": sum(h for _, h in held),
                "milestones": [{"milestone_id": m, "held": h} for m, h in held]}

    @api.get("/ledger/check")
    async def check(request: Request) -> dict:
        async with request.app.state.runtime.session_factory() as session:
            # One snapshot: postings, balances and holdings read at the same instant.
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            postings, stored, held = await LedgerRepository(session).everything()
            pending = await EarningsRepository(session).pending_by_account()
        problems = ledger.check(postings, stored, held, pending)
        return {"ok": not problems, "problems": problems, "postings": len(postings)}

    @api.get("/accounts/{account_id}/balance")
    async def balance(account_id: str, request: Request) -> dict:
        """`{currency: {pending, available}}`: a freelancer's earnings inside and past the security period."""
        async with request.app.state.runtime.session_factory() as session:
            return await EarningsRepository(session).balance_of(account_id)

    return api
