"""What is coming up for a person, read in one transaction (the HTTP read and the submission's notice)."""

from datetime import datetime

from platform_schemas.events.contracts import UpcomingItem

from ..adapters.upcoming_repository import UpcomingRepository
from ..domain import upcoming
from ..settings import ContractsSettings


async def upcoming_for(repo: UpcomingRepository, account_id: str, now: datetime, settings: ContractsSettings,
                       limit: int) -> list[upcoming.Upcoming]:
    items = await repo.of(account_id, now, settings.review_reminder_before, limit)
    items += upcoming.bonus_items(account_id, await repo.pending_bonuses(account_id, limit), settings.bonus_batch_at)
    return upcoming.soonest_first(items, limit)


def as_wire(items: list[upcoming.Upcoming]) -> list[UpcomingItem]:
    return [UpcomingItem(**{k: v for k, v in item.__dict__.items() if v is not None}) for item in items]
