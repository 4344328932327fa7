"""Bonuses as contracts records them: given, then paid or failed as billing's batch reports."""

from dataclasses import asdict
from datetime import datetime

from sqlalchemy import select, update
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

    async def settle(self, bonus_id: str, status: str, reason_code: str | None, at: datetime) -> None:
        await self.session.execute(update(bonuses).where(bonuses.c.bonus_id == bonus_id, bonuses.c.status == "pending")
                                   .values(status=status, reason_code=reason_code, settled_at=at))

    async def of_contract(self, contract_id: str) -> list[Bonus]:
        rows = await self.session.execute(select(bonuses).where(bonuses.c.contract_id == contract_id)
                                          .order_by(bonuses.c.given_at, bonuses.c.bonus_id))
        return [Bonus(**dict(r)) for r in rows.mappings()]
