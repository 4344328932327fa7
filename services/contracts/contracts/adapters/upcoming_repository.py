"""The rows behind what is coming up for one account, each source read soonest first and bounded."""

from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..domain import upcoming
from ..domain.contracts import REFUND_REQUESTED, SUBMITTED
from ..domain.statement import RELEASED
from .tables import bonuses, contracts, milestones, statement_entries


class UpcomingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def of(self, account_id: str, now: datetime, reminder_before: timedelta, limit: int) -> list[upcoming.Upcoming]:
        party = or_(contracts.c.client_id == account_id, contracts.c.freelancer_id == account_id)
        items = []
        reviews = await self.session.execute(
            select(milestones.c.milestone_id, milestones.c.contract_id, milestones.c.amount, milestones.c.review_due_at,
                   contracts.c.currency).join(contracts, contracts.c.contract_id == milestones.c.contract_id)
            .where(party, milestones.c.status == SUBMITTED, milestones.c.review_due_at.is_not(None),
                   ~milestones.c.removed).order_by(milestones.c.review_due_at).limit(limit))
        items += [upcoming.auto_release(r.contract_id, r.milestone_id, r.amount, r.currency, r.review_due_at,
                                        reminder_before) for r in reviews]
        refunds = await self.session.execute(
            select(milestones.c.milestone_id, milestones.c.contract_id, milestones.c.amount, milestones.c.respond_by,
                   contracts.c.currency).join(contracts, contracts.c.contract_id == milestones.c.contract_id)
            .where(party, milestones.c.status == REFUND_REQUESTED, milestones.c.respond_by.is_not(None),
                   ~milestones.c.removed).order_by(milestones.c.respond_by).limit(limit))
        items += [upcoming.refund_deadline(r.contract_id, r.milestone_id, r.amount, r.currency, r.respond_by)
                  for r in refunds]
        earnings = await self.session.execute(
            select(statement_entries.c.contract_id, statement_entries.c.item_kind, statement_entries.c.item_id,
                   statement_entries.c.amount, statement_entries.c.available_at, contracts.c.currency)
            .join(contracts, contracts.c.contract_id == statement_entries.c.contract_id)
            .where(contracts.c.freelancer_id == account_id, statement_entries.c.kind == RELEASED,
                   statement_entries.c.available_at > now)
            .order_by(statement_entries.c.available_at).limit(limit))
        items += [upcoming.earning_available(r.contract_id, r.item_kind, r.item_id, r.amount, r.currency,
                                             r.available_at) for r in earnings]
        return items

    async def pending_bonuses(self, account_id: str, limit: int) -> list[upcoming.PendingBonus]:
        rows = await self.session.execute(
            select(bonuses.c.bonus_id, bonuses.c.contract_id, bonuses.c.client_id, bonuses.c.freelancer_id,
                   bonuses.c.amount, bonuses.c.currency, bonuses.c.business_date)
            .where(or_(bonuses.c.client_id == account_id, bonuses.c.freelancer_id == account_id),
                   bonuses.c.status == "pending").order_by(bonuses.c.business_date, bonuses.c.bonus_id).limit(limit))
        return [upcoming.PendingBonus(**r._mapping) for r in rows]
