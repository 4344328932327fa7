"""The bonus batch's credit window on real PostgreSQL: what is asked of escrow and what it answered are counted
in the statements that move the bonuses, so the bonuses in flight are known exactly without counting them; a
second instance's credit step waits for the first one's count; a chunk goes on after the last one's end, by
charge (a charge is followed up once none of its bonuses is left charged); no index names a bonus's status or
charge, so that its moves are updates in place.
"""

import asyncio
import uuid
from datetime import date

import pytest
import pytest_asyncio
from alembic import command
from platform_runtime.migrate import alembic_config, upgrade
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from billing.adapters.bonus_repository import BonusRepository
from billing.adapters.tables import bonus_batches, bonus_charges, bonus_credit_counts, bonuses
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


def a_charge(c: int, bonuses: int, status: str = "succeeded") -> dict:
    return {"charge_id": f"ch-{c:03}", "idempotency_key": f"key-{c:03}", "business_date": DAY, "charge_date": DAY,
            "client_id": f"cl-{c:03}", "currency": "USD", "amount": 100 * bonuses, "bonuses": bonuses,
            "status": status}


async def a_batch(engine) -> None:
    async with new_uow(engine) as uow:
        assert await BonusRepository(uow.session).add_batch(
            business_date=DAY, status=BatchStatus.CHARGING, cutoff=NOW, correlation_id="corr", actor="system",
            started_by="timer", waiters=[], started_at=NOW)
        await uow.commit()


async def a_batch_with_charged_bonuses(engine, charges: int, per_charge: int) -> None:
    await a_batch(engine)
    async with new_uow(engine) as uow:
        await uow.session.execute(insert(bonus_charges), [a_charge(c, per_charge) for c in range(charges)])
        await uow.session.execute(insert(bonuses), [
            {"bonus_id": f"b-{c:03}-{b:03}", "contract_id": "c-1", "client_id": f"cl-{c:03}", "freelancer_id": "fl-1",
             "amount": 100, "currency": "USD", "business_date": DAY, "given_at": NOW, "batch_date": DAY,
             "status": "charged", "charge_id": f"ch-{c:03}"} for c in range(charges) for b in range(per_charge)])
        await uow.commit()


async def followed_up(engine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.scalars(select(bonus_charges.c.charge_id).where(
            bonus_charges.c.business_date == DAY, bonus_charges.c.followed_up_at.is_not(None))))


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
        first = await repo.ask_credits(DAY, 12, NOW)
        await uow.commit()
    assert [b.bonus_id for _, b in first] == sorted(b.bonus_id for _, b in first)
    assert await counts(engine) == {"asked": 12, "posted": 0}
    # Two charges' bonuses all asked, the third's in part: it is not followed up yet.
    assert await followed_up(engine) == {"ch-000", "ch-001"}

    # On after the first chunk's end: the next bonuses, none of the first again.
    up_to = (first[-1][0], first[-1][1].bonus_id)
    async with new_uow(engine) as uow:
        second = await BonusRepository(uow.session).ask_credits(DAY, 12, NOW)
        await uow.commit()
    assert len(second) == 12 and min((c, b.bonus_id) for c, b in second) > up_to
    assert await counts(engine) == {"asked": 24, "posted": 0}
    assert await followed_up(engine) == {"ch-000", "ch-001", "ch-002", "ch-003"}

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
        assert len(await repo.ask_credits(DAY, 15, NOW)) == 15
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
            {"bonus_id": f"b-{status}-{i}", "contract_id": "c-1", "client_id": "cl-001", "freelancer_id": "fl-1",
             "amount": 100, "currency": "USD", "business_date": DAY, "given_at": NOW, "batch_date": DAY,
             "status": status, "charge_id": "ch-001"}
            for status, n in (("paid", 3), ("crediting", 2), ("charged", 4)) for i in range(n)])
        # Owed once, then paid by a later retry, and owed still: only the second keeps its last day of retries.
        await conn.execute(insert(bonuses), [
            {"bonus_id": f"b-once-{status}", "contract_id": "c-1", "client_id": "cl-009", "freelancer_id": "fl-1",
             "amount": 100, "currency": "USD", "business_date": done_day, "given_at": NOW, "batch_date": done_day,
             "status": status, "charge_id": "ch-009", "past_due_until": DAY} for status in ("paid", "past_due")])
        # The charges as that revision had them (no followed_up_at yet).
        await conn.execute(insert(bonus_charges), [{**a_charge(1, 9), "settled_at": NOW},
                                                   {**a_charge(2, 1), "business_date": done_day, "settled_at": NOW}])
    await asyncio.to_thread(upgrade, definition.migrations_dir, url)

    assert await counts(engine) == {"asked": 5, "posted": 3}
    async with engine.connect() as conn:  # a completed batch has nothing in flight to count
        assert not (await conn.execute(select(bonus_credit_counts).where(
            bonus_credit_counts.c.business_date == done_day))).all()
        # ... and its charges are followed up; the batch under way's is not, until its bonuses are asked.
        assert dict((await conn.execute(select(bonus_charges.c.charge_id, bonus_charges.c.followed_up_at))).all()) \
            == {"ch-001": None, "ch-002": NOW}
    async with new_uow(engine) as uow:
        repo = BonusRepository(uow.session)
        assert len(await repo.ask_credits(DAY, 100, NOW)) == 4
        assert await repo.credits_in_flight(DAY) == 6
        await uow.commit()
    assert await followed_up(engine) == {"ch-001"}
    async with engine.connect() as conn:
        assert dict((await conn.execute(select(bonuses.c.bonus_id, bonuses.c.past_due_until).where(
            bonuses.c.client_id == "cl-009"))).all()) == {"b-once-paid": None, "b-once-past_due": DAY}


async def test_a_charge_asked_already_is_followed_up_with_nothing_asked_again(engine):
    """A batch under way when the charges began to be followed up: an older instance asked by status."""
    await a_batch_with_charged_bonuses(engine, charges=2, per_charge=3)
    async with engine.begin() as conn:
        await conn.execute(bonuses.update().where(bonuses.c.charge_id == "ch-000").values(status="crediting"))
    async with new_uow(engine) as uow:
        repo = BonusRepository(uow.session)
        assert {b.bonus_id for _, b in await repo.ask_credits(DAY, 100, NOW)} == {f"b-001-00{i}" for i in range(3)}
        assert await repo.any_unsettled(DAY)  # asked, not answered
        await uow.commit()
    assert await followed_up(engine) == {"ch-000", "ch-001"}
    async with new_uow(engine) as uow:
        assert await BonusRepository(uow.session).ask_credits(DAY, 100, NOW) == []


async def test_under_way_until_every_charge_is_followed_up_and_every_credit_answered(engine):
    await a_batch_with_charged_bonuses(engine, charges=1, per_charge=2)
    async with new_uow(engine) as uow:
        repo = BonusRepository(uow.session)
        assert await repo.any_unsettled(DAY)  # a charge whose bonuses are not asked yet
        asked = await repo.ask_credits(DAY, 100, NOW)
        await uow.commit()
    async with new_uow(engine) as uow:
        repo = BonusRepository(uow.session)
        assert await repo.any_unsettled(DAY)  # asked, escrow has not answered
        await repo.mark_paid([b.bonus_id for _, b in asked], NOW)
        assert not await repo.any_unsettled(DAY)
        await uow.session.execute(insert(bonus_charges), [a_charge(7, 1, status="pending")])
        assert await repo.any_unsettled(DAY)  # a charge not answered by the gateway yet


async def test_a_failed_charges_declined_bonuses_are_claimed_by_charge(engine):
    await a_batch(engine)
    async with engine.begin() as conn:
        await conn.execute(insert(bonus_charges), [a_charge(c, 3, status="failed") for c in range(2)])
        await conn.execute(insert(bonuses), [
            {"bonus_id": f"b-{c:03}-{b:03}", "contract_id": "c-1", "client_id": f"cl-{c:03}", "freelancer_id": "fl-1",
             "amount": 100, "currency": "USD", "business_date": DAY, "given_at": NOW, "batch_date": DAY,
             "status": "declined" if c == 0 else "past_due", "charge_id": f"ch-{c:03}"}
            for c in range(2) for b in range(3)])
    async with new_uow(engine) as uow:
        repo = BonusRepository(uow.session)
        charges, claimed = await repo.claim_declined(DAY, 2)
        assert charges == {"ch-000", "ch-001"}  # the second's bonuses moved on already: none claimed
        assert [b.bonus_id for _, b in claimed] == ["b-000-000", "b-000-001"]
        await repo.set_failed([b.bonus_id for _, b in claimed], NOW)
        await repo.follow_up_failed(DAY, charges, NOW)
        await uow.commit()
    assert await followed_up(engine) == {"ch-001"}  # one of the first's bonuses is still declined
    async with new_uow(engine) as uow:
        repo = BonusRepository(uow.session)
        charges, claimed = await repo.claim_declined(DAY, 2)
        assert charges == {"ch-000"} and [b.bonus_id for _, b in claimed] == ["b-000-002"]
        await repo.set_failed(["b-000-002"], NOW)
        await repo.follow_up_failed(DAY, charges, NOW)
        await uow.commit()
    assert await followed_up(engine) == {"ch-000", "ch-001"}
    assert await in_status(engine, "failed") == 3


async def test_no_index_names_a_bonus_status_or_charge(engine):
    """PostgreSQL updates a row in place only when no indexed column changes (a partial index's predicate
    included): a bonus's moves after its batch took it change only these columns."""
    async with engine.connect() as conn:
        definitions = list(await conn.scalars(text(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'bonuses'::regclass")))
        options = await conn.scalar(text("SELECT reloptions FROM pg_class WHERE oid = 'bonuses'::regclass"))
    assert definitions and not [d for d in definitions if "status" in d or "charge_id" in d]
    assert "fillfactor=75" in options
