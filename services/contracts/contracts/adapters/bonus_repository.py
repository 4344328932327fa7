"""Bonuses as contracts records them: given, then paid or failed as billing's batch reports."""

from dataclasses import asdict
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..domain.bonuses import Bonus
from .tables import bonuses


class BonusRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, bonus: Bonus) -> bool:
        """False when the id is taken (ids are never reused)."""
        added = await self.session.scalar(
            insert(bonuses).values(**asdict(bonus)).on_conflict_do_nothing().returning(bonuses.c.bonus_id))
        return added is not None

    async def given_on(self, client_id: str, currency: str, business_date) -> int:
        """The client's bonuses of one UTC day in one currency, summed by PostgreSQL (numeric: no overflow)."""
        return int(await self.session.scalar(select(func.coalesce(func.sum(bonuses.c.amount), 0)).where(
            bonuses.c.client_id == client_id, bonuses.c.currency == currency,
            bonuses.c.business_date == business_date)))

    async def settle(self, bonus_id: str, status: str, reason_code: str | None, at: datetime) -> None:
        await self.session.execute(update(bonuses).where(bonuses.c.bonus_id == bonus_id, bonuses.c.status == "pending")
                                   .values(status=status, reason_code=reason_code, settled_at=at))

    async def of_contract(self, contract_id: str) -> list[Bonus]:
        rows = await self.session.execute(select(bonuses).where(bonuses.c.contract_id == contract_id)
                                          .order_by(bonuses.c.given_at, bonuses.c.bonus_id))
        return [Bonus(**dict(r)) for r in rows.mappings()]
