"""The bonus batch's credit window on real PostgreSQL: what is asked of escrow and what it answered are counted
in the statements that move the bonuses, so the bonuses in flight are known exactly without counting them; a
second instance's credit step waits for the first one's count; a chunk goes on after the last one's end.
"""

import asyncio
import uuid
from datetime import date, datetime, timezone

import pytest
import pytest_asyncio
from platform_runtime.clock import FrozenClock
from platform_runtime.migrate import upgrade
from platform_runtime.unit_of_work import UnitOfWork
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from billing.adapters.bonus_repository import BonusRepository
from billing.adapters.tables import bonus_credit_counts, bonuses, metadata
from billing.bootstrap import definition
from billing.domain.bonus_batch_states import BatchStatus
from tests.integration.test_past_due_refresh import waiting_for_a_lock
from tests.support.probe_service import drop_database, scratch_database
from tests.support.processes import DB_PREFIX

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 2, 1, 0, tzinfo=timezone.utc)
DAY = date(2026, 12, 1)


@pytest_asyncio.fixture(loop_scope="session")
async def engine(infra):
    name = f"{DB_PREFIX}it_credit_window_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(infra.postgres_url, name)
    await asyncio.to_thread(upgrade, definition.migrations_dir, url)
    engine = create_async_engine(url)
    yield engine
    await engine.dispose()
    await drop_database(infra.postgres_url, name)


def new_uow(engine) -> UnitOfWork:
    return UnitOfWork(engine, metadata.tables, "billing", FrozenClock(NOW), "outbox_billing")


async def a_batch_with_charged_bonuses(engine, charges: int, per_charge: int) -> None:
    async with new_uow(engine) as uow:
        assert await BonusRepository(uow.session).add_batch(
            business_date=DAY, status=BatchStatus.CHARGING, cutoff=NOW, correlation_id="corr", actor="system",
            started_by="timer", waiters=[], started_at=NOW)
        await uow.session.execute(insert(bonuses), [
            {"bonus_id": f"b-{c:03}-{b:03}", "contract_id": "c-1", "client_id": f"cl-{c:03}", "freelancer_id": "fl-1",
             "amount": 100, "currency": "USD", "business_date": DAY, "given_at": NOW, "batch_date": DAY,
             "status": "charged", "charge_id": f"ch-{c:03}"} for c in range(charges) for b in range(per_charge)])
        await uow.commit()


async def counts(engine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(bonus_credit_counts.c.side, bonus_credit_counts.c.bonuses)
                                  .where(bonus_credit_counts.c.business_date == DAY))
        return dict(rows.all())


async def in_status(engine, status: str) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(select(func.count()).where(bonuses.c.batch_date == DAY, bonuses.c.status == status))


async def test_asked_and_posted_are_counted_by_the_moves_themselves(engine):
    await a_batch_with_charged_bonuses(engine, charges=10, per_charge=5)
    assert await counts(engine) == {"asked": 0, "posted": 0}
    async with new_uow(engine) as uow:
        repo = BonusRepository(uow.session)
        assert await repo.credits_in_flight(DAY) == 0
        first = await repo.ask_credits(DAY, 12)
        await uow.commit()
    assert [b.bonus_id for _, b in first] == sorted(b.bonus_id for _, b in first)
    assert await counts(engine) == {"asked": 12, "posted": 0}

    # On after the first chunk's end: the next bonuses, none of the first again.
    up_to = (first[-1][0], first[-1][1].bonus_id)
    async with new_uow(engine) as uow:
        second = await BonusRepository(uow.session).ask_credits(DAY, 12, up_to)
        await uow.commit()
    assert min((c, b.bonus_id) for c, b in second) > up_to
    assert await counts(engine) == {"asked": 24, "posted": 0}

    # Escrow answers for the first chunk, and again (a re-delivered answer pays and counts nothing twice).
    for _ in range(2):
        async with new_uow(engine) as uow:
            await BonusRepository(uow.session).mark_paid([b.bonus_id for _, b in first], NOW)
            await uow.commit()
    assert await counts(engine) == {"asked": 24, "posted": 12}
    async with new_uow(engine) as uow:
        assert await BonusRepository(uow.session).credits_in_flight(DAY) == 12 == await in_status(engine, "crediting")


async def test_a_second_credit_step_waits_for_the_first_ones_count(engine):
    """Two instances may not both fill the window: the second reads the asked count once the first committed."""
    await a_batch_with_charged_bonuses(engine, charges=4, per_charge=5)
    first_uow = new_uow(engine)
    async with first_uow as uow:
        repo = BonusRepository(uow.session)
        assert await repo.credits_in_flight(DAY) == 0
        second = asyncio.create_task(_in_flight_when_allowed(engine))
        await waiting_for_a_lock(engine)
        assert len(await repo.ask_credits(DAY, 15)) == 15
        await uow.commit()
    assert await second == 15


async def _in_flight_when_allowed(engine) -> int:
    async with new_uow(engine) as uow:
        return await BonusRepository(uow.session).credits_in_flight(DAY)
