"""Billing's past-due balance under concurrent changes, on real PostgreSQL: two transactions that each make a
bonus of the same client past due and refresh the balance at once end with the sum of both, and the last
PastDueBalanceChanged they wrote to the outbox says that same amount, with the highest version.

Before the fix each read what was owed before locking the balance: the second to commit wrote (and told) only
what it had seen itself.
"""

import asyncio
import time
import uuid
from datetime import date, datetime, timezone

import pytest
import pytest_asyncio
from platform_runtime.clock import FrozenClock
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope
from sqlalchemy import insert, select, text

from billing.adapters.bonus_repository import BonusRepository
from billing.adapters.tables import bonuses, metadata, past_due_balances
from billing.bootstrap import definition
from billing.service_layer import past_due
from tests.support.probe_service import migrated_engine

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 2, 1, 0, tzinfo=timezone.utc)
UNTIL = date(2026, 12, 9)
CLIENT = "cl-past-due"


@pytest_asyncio.fixture(loop_scope="session")
async def engine(infra):
    async with migrated_engine(infra.postgres_url, "past_due", definition.migrations_dir) as engine:
        yield engine


def new_uow(engine) -> UnitOfWork:
    return UnitOfWork(engine, metadata.tables, "billing",
                      FrozenClock(NOW), "outbox_billing")


async def declined(engine, *amounts: int) -> list[str]:
    """Bonuses of the client whose charge was just declined (not owed yet: not past due)."""
    ids = [f"b-{uuid.uuid4().hex[:8]}" for _ in amounts]
    async with engine.begin() as conn:
        await conn.execute(insert(bonuses), [
            {"bonus_id": bonus_id, "contract_id": "c-1", "client_id": CLIENT, "freelancer_id": "fl-1",
             "amount": amount, "currency": "USD", "business_date": date(2026, 12, 1), "given_at": NOW,
             "batch_date": date(2026, 12, 1), "status": "declined"} for bonus_id, amount in zip(ids, amounts)])
    return ids


async def waiting_for_a_lock(engine, timeout: float = 10) -> None:
    """Until another session of this database waits for a row lock (polled with a deadline). Each poll is a
    transaction of its own: PostgreSQL keeps one snapshot of pg_stat_activity for a whole transaction, so polls
    in one transaction would never see a wait that began after the first."""
    deadline = time.monotonic() + timeout
    async with engine.connect() as conn:
        while not await conn.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")):
            await conn.rollback()
            assert time.monotonic() < deadline, "the second refresh never waited for the first one's lock"
            await asyncio.sleep(0.05)


async def make_past_due_and_refresh(uow: UnitOfWork, bonus_id: str) -> None:
    repo = BonusRepository(uow.session)
    await repo.set_past_due([bonus_id], UNTIL)
    await past_due.refresh(uow, repo, {(CLIENT, "USD")}, {(CLIENT, "USD"): ("card_declined", "Declined.")})


async def told(engine) -> list[dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT payload FROM outbox WHERE type = 'PastDueBalanceChanged' ORDER BY seq"))
        return [Envelope.model_validate_json(payload).data for (payload,) in rows]


async def test_two_refreshes_at_once_end_with_the_sum_of_both_and_the_last_event_says_it(engine):
    first_bonus, second_bonus = await declined(engine, 1_200, 800)
    first, second = new_uow(engine), new_uow(engine)
    async with first, second:
        await make_past_due_and_refresh(first, first_bonus)  # holds the balance's lock until it commits
        racing = asyncio.create_task(make_past_due_and_refresh(second, second_bonus))
        await waiting_for_a_lock(engine)
        await first.commit()
        await racing  # now reads what is owed, the first one's bonus included
        await second.commit()

    async with engine.connect() as conn:
        [balance] = (await conn.execute(select(past_due_balances))).mappings().all()
    assert (balance["amount"], balance["version"], balance["retry_until"]) == (2_000, 2, UNTIL)
    events = await told(engine)
    assert [(e["amount"], e["previous_amount"], e["version"]) for e in events] == [(1_200, 0, 1), (2_000, 1_200, 2)]
    assert events[-1]["amount"] == balance["amount"] and events[-1]["version"] == balance["version"]


async def test_a_refresh_that_changes_nothing_tells_nothing_and_keeps_the_version(engine):
    [bonus_id] = await declined(engine, 500)
    uow = new_uow(engine)
    async with uow:
        await make_past_due_and_refresh(uow, bonus_id)
        await uow.commit()
    before = len(await told(engine))
    uow = new_uow(engine)
    async with uow:
        await past_due.refresh(uow, BonusRepository(uow.session), {(CLIENT, "USD"), ("cl-never-owed", "EUR")})
        await uow.commit()
    assert len(await told(engine)) == before
    async with engine.connect() as conn:
        rows = {(r.client_id, r.currency): (r.amount, r.version)
                for r in await conn.execute(select(past_due_balances))}
    assert rows[("cl-never-owed", "EUR")] == (0, 0)


async def test_a_payment_of_a_client_that_never_owed_writes_no_balance_and_one_that_owed_settles_it(engine):
    [bonus_id] = await declined(engine, 500)
    uow = new_uow(engine)
    async with uow:
        await make_past_due_and_refresh(uow, bonus_id)
        await uow.commit()
    uow = new_uow(engine)
    async with uow:  # a later batch charged the past-due bonus, and another client's new one
        await uow.session.execute(text("UPDATE bonuses SET status = 'charged' WHERE bonus_id = :b"), {"b": bonus_id})
        await past_due.refresh(uow, BonusRepository(uow.session), {(CLIENT, "USD"), ("cl-paid", "USD")},
                               paid_only=True)
        await uow.commit()
    async with engine.connect() as conn:
        rows = {(r.client_id, r.currency): (r.amount, r.version)
                for r in await conn.execute(select(past_due_balances))}
    assert rows == {(CLIENT, "USD"): (0, 2)}
    assert [(e["amount"], e["version"]) for e in await told(engine)] == [(500, 1), (0, 2)]


@pytest_asyncio.fixture(loop_scope="session")
async def escrow_engine(infra):
    from escrow.bootstrap import definition as escrow

    async with migrated_engine(infra.postgres_url, "past_due_escrow", escrow.migrations_dir) as engine:
        yield engine


async def test_escrow_keeps_the_newest_past_due_word_when_an_older_one_arrives_late(escrow_engine):
    from escrow.adapters.earnings_repository import EarningsRepository

    async with escrow_engine.begin() as conn:
        repo = EarningsRepository(conn)
        assert await repo.set_past_due(CLIENT, "USD", 2_000, 2)
        assert not await repo.set_past_due(CLIENT, "USD", 1_200, 1)  # late
        assert await repo.balance_of(CLIENT) == {"USD": {"pending": 0, "available": 0, "past_due": 2_000}}
        assert await repo.set_past_due(CLIENT, "USD", 0, 3)
        assert await repo.set_past_due(CLIENT, "EUR", 300, None)  # a billing without versions: taken as is
        assert await repo.balance_of(CLIENT) == {"EUR": {"pending": 0, "available": 0, "past_due": 300}}
