"""The bonus batch's credit window on real PostgreSQL: what is asked of escrow and what it answered are counted
in the statements that move the bonuses, so the bonuses in flight are known exactly without counting them; a
second instance's credit step waits for the first one's count; a chunk goes on after the last one's end.
"""

import asyncio
import uuid
from datetime import date

import pytest
import pytest_asyncio
from alembic import command
from platform_runtime.migrate import alembic_config, upgrade
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from billing.adapters.bonus_repository import BonusRepository
from billing.adapters.tables import bonus_batches, bonus_credit_counts, bonuses
from billing.bootstrap import definition
from billing.domain.bonus_batch_states import BatchStatus
from tests.integration.test_past_due_refresh import NOW, new_uow, waiting_for_a_lock
from tests.support.probe_service import drop_database, migrated_engine, scratch_database
from tests.support.processes import DB_PREFIX

pytestmark = pytest.mark.integration
DAY = date(2026, 12, 1)


@pytest_asyncio.fixture(loop_scope="session")
async def engine(infra):
    async with migrated_engine(infra.postgres_url, "credit_window", definition.migrations_dir) as engine:
        yield engine


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


@pytest_asyncio.fixture(loop_scope="session")
async def before_the_counts(infra):
    """A database at the revision before bonus_credit_counts: for the upgrade of a batch under way."""
    name = f"{DB_PREFIX}it_credit_upgrade_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(infra.postgres_url, name)
    await asyncio.to_thread(command.upgrade, alembic_config(definition.migrations_dir, url), "a4e8c2f6b1d9")
    engine = create_async_engine(url)
    try:
        yield url, engine
    finally:
        await engine.dispose()
        await drop_database(infra.postgres_url, name)


async def test_the_upgrade_counts_what_a_batch_under_way_has_asked_and_been_answered(before_the_counts):
    url, engine = before_the_counts
    done_day = date(2026, 11, 30)
    async with engine.begin() as conn:
        await conn.execute(insert(bonus_batches), [
            {"business_date": day, "status": status, "cutoff": NOW, "correlation_id": "corr", "actor": "system",
             "started_by": "timer", "waiters": [], "started_at": NOW}
            for day, status in ((DAY, "charging"), (done_day, "completed"))])
        await conn.execute(insert(bonuses), [
            {"bonus_id": f"b-{status}-{i}", "contract_id": "c-1", "client_id": "cl-1", "freelancer_id": "fl-1",
             "amount": 100, "currency": "USD", "business_date": DAY, "given_at": NOW, "batch_date": DAY,
             "status": status, "charge_id": "ch-1"}
            for status, n in (("paid", 3), ("crediting", 2), ("charged", 4)) for i in range(n)])
    await asyncio.to_thread(upgrade, definition.migrations_dir, url)

    assert await counts(engine) == {"asked": 5, "posted": 3}
    async with engine.connect() as conn:  # a completed batch has nothing in flight to count
        assert not (await conn.execute(select(bonus_credit_counts).where(
            bonus_credit_counts.c.business_date == done_day))).all()
    async with new_uow(engine) as uow:
        repo = BonusRepository(uow.session)
        assert len(await repo.ask_credits(DAY, 100)) == 4
        assert await repo.credits_in_flight(DAY) == 6
        await uow.commit()
