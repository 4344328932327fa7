"""Disputes, and the administrators' queues read from them and from accounts (oldest first, paged)."""

from dataclasses import asdict
from datetime import datetime

from sqlalchemy import select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..domain.disputes import OPEN, Dispute
from .tables import accounts, disputes

Cursor = tuple[datetime, str]


class DisputeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, dispute: Dispute) -> None:
        await self.session.execute(insert(disputes).values(**asdict(dispute)).on_conflict_do_nothing())

    async def get(self, milestone_id: str) -> Dispute | None:
        row = (await self.session.execute(select(disputes).where(disputes.c.milestone_id == milestone_id)
                                          .with_for_update())).mappings().first()
        return Dispute(**row) if row else None

    async def save(self, dispute: Dispute) -> None:
        await self.session.execute(update(disputes).where(disputes.c.milestone_id == dispute.milestone_id)
                                   .values(overdue_at=dispute.overdue_at, resolved_at=dispute.resolved_at))

    async def page(self, status: str, after: Cursor | None, limit: int) -> list[Dispute]:
        """Open (or resolved) disputes, oldest first."""
        query = select(disputes).where(disputes.c.resolved_at.is_(None) if status == OPEN
                                       else disputes.c.resolved_at.is_not(None))
        if after:
            query = query.where(tuple_(disputes.c.opened_at, disputes.c.milestone_id) > after)
        rows = await self.session.execute(query.order_by(disputes.c.opened_at, disputes.c.milestone_id).limit(limit))
        return [Dispute(**r) for r in rows.mappings()]


async def pending_reactivation_requests(session: AsyncSession, after: Cursor | None, limit: int) -> list[dict]:
    query = select(accounts.c.account_id, accounts.c.role, accounts.c.name, accounts.c.status_reason,
                   accounts.c.reactivation_requested_at).where(accounts.c.reactivation_requested)
    if after:
        query = query.where(tuple_(accounts.c.reactivation_requested_at, accounts.c.account_id) > after)
    rows = await session.execute(query.order_by(accounts.c.reactivation_requested_at, accounts.c.account_id)
                                 .limit(limit))
    return [dict(r) for r in rows.mappings()]
