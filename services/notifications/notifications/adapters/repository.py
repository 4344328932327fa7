"""Reads and writes notifications' tables inside the caller's transaction."""

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..domain.delivery import PENDING
from ..domain.routing import Parties
from .tables import accounts, contracts, milestones, notifications


class NotificationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- projections ---------------------------------------------------------------------------
    async def save_account(self, account_id: str, role: str, name: str, email: str) -> None:
        stmt = insert(accounts).values(account_id=account_id, role=role, name=name, email=email)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=["account_id"], set_={"role": role, "name": name, "email": email}))

    async def account(self, account_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(select(accounts).where(accounts.c.account_id == account_id))).mappings()
        return dict(found) if (found := row.first()) else None

    async def save_contract(self, parties: Parties) -> None:
        values = dict(contract_id=parties.contract_id, client_id=parties.client_id,
                      freelancer_id=parties.freelancer_id, currency=parties.currency, title=parties.title)
        stmt = insert(contracts).values(**values)
        # A later event without a title must not erase the one OfferSent gave.
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=["contract_id"],
            set_={"client_id": parties.client_id, "freelancer_id": parties.freelancer_id,
                  "currency": parties.currency, "title": func.coalesce(stmt.excluded.title, contracts.c.title)}))

    async def parties(self, contract_id: str | None) -> Parties | None:
        if not contract_id:
            return None
        row = (await self.session.execute(
            select(contracts).where(contracts.c.contract_id == contract_id))).mappings().first()
        return Parties(**row) if row else None

    async def save_milestone(self, milestone_id: str, contract_id: str, title: str, amount: int) -> None:
        stmt = insert(milestones).values(milestone_id=milestone_id, contract_id=contract_id, title=title,
                                         amount=amount)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=["milestone_id"], set_={"title": title, "amount": amount}))

    async def milestone_title(self, milestone_id: str | None) -> str | None:
        if not milestone_id:
            return None
        return await self.session.scalar(select(milestones.c.title).where(milestones.c.milestone_id == milestone_id))

    # -- notifications -------------------------------------------------------------------------
    async def add(self, **row: Any) -> bool:
        """Insert one notification; False when this event already notified this person on this channel."""
        added = await self.session.scalar(
            insert(notifications).values(**row).on_conflict_do_nothing().returning(notifications.c.notification_id))
        return added is not None

    async def next_due_email(self, now: datetime) -> dict[str, Any] | None:
        """The oldest due pending email, locked; other instances and workers skip it meanwhile."""
        row = (await self.session.execute(
            select(notifications)
            .where(notifications.c.status == PENDING, notifications.c.next_attempt_at <= now)
            .order_by(notifications.c.next_attempt_at).limit(1).with_for_update(skip_locked=True)
        )).mappings().first()
        return dict(row) if row else None

    async def mark(self, notification_id: str, **values: Any) -> None:
        await self.session.execute(
            update(notifications).where(notifications.c.notification_id == notification_id).values(**values))

    async def for_account(self, account_id: str, limit: int, before_seq: int | None) -> list[dict[str, Any]]:
        """Newest first; `before_seq` is the cursor of the previous page."""
        query = select(notifications).where(notifications.c.account_id == account_id)
        if before_seq is not None:
            query = query.where(notifications.c.seq < before_seq)
        rows = await self.session.execute(query.order_by(notifications.c.seq.desc()).limit(limit))
        return [dict(r) for r in rows.mappings()]

    async def knows_account(self, account_id: str) -> bool:
        if await self.account(account_id):
            return True
        found = await self.session.scalar(
            select(notifications.c.notification_id).where(notifications.c.account_id == account_id).limit(1))
        return found is not None
