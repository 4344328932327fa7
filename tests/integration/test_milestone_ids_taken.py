"""Milestone and contract ids are unique across the platform (issue 9, item 1), on real PostgreSQL.

Two transactions that both found an id free and both write it: the second is refused `id_taken` and the
contract that owns the id is never touched, whichever command (SendOffer, AddMilestone, a next milestone)
brought it.
"""

import asyncio
from datetime import datetime, timezone

import pytest
import pytest_asyncio
from platform_runtime import driver_sql
from platform_runtime.errors import IsolationNeeded, Rejected

from contracts.adapters.repositories import ContractRepository
from contracts.bootstrap import definition
from contracts.domain.contracts import Contract, Milestone
from tests.support.probe_service import migrated_engine

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest_asyncio.fixture(loop_scope="session")
async def engine(infra):
    async with migrated_engine(infra.postgres_url, "ids", definition.migrations_dir) as engine:
        yield engine


def offer(contract_id: str, *milestone_ids: str, amount: int = 1_000) -> Contract:
    return Contract(contract_id, "cl", "fl", "T", "USD", "first_milestone", "funding",
                    [Milestone(m, "M", amount, i) for i, m in enumerate(milestone_ids)], created_at=NOW, is_new=True)


async def test_a_milestone_id_written_at_once_by_two_contracts_goes_to_the_first_only(engine):
    first, second = engine.connect(), engine.connect()
    async with first as a, second as b:
        await a.begin()
        await b.begin()
        await ContractRepository(a).save(offer("c-1", "m:1"), "SendOffer", NOW)
        # b found m:1 free too (a has not committed); its insert waits for a, then finds the id taken.
        saving = asyncio.create_task(ContractRepository(b).save(offer("c-2", "m:1", amount=99_999), "SendOffer", NOW))
        await asyncio.sleep(0.2)
        await a.commit()
        with pytest.raises(Rejected) as refused:
            await saving
        assert refused.value.reason_code == "id_taken"
        await b.rollback()
    async with engine.connect() as conn:
        owner = await ContractRepository(conn).get("c-1", lock=False)
        assert [(m.milestone_id, m.amount) for m in owner.milestones] == [("m:1", 1_000)]
        assert await ContractRepository(conn).get("c-2", lock=False) is None


async def test_a_new_milestone_of_an_existing_contract_cannot_take_another_contracts_id(engine):
    async with engine.begin() as conn:
        await ContractRepository(conn).save(offer("c-3", "m-3"), "SendOffer", NOW)
        await ContractRepository(conn).save(offer("c-4", "m-4"), "SendOffer", NOW)
    async with engine.connect() as conn:
        await conn.begin()
        repo = ContractRepository(conn)
        mine = await repo.get("c-4")
        mine.milestones.append(Milestone("m-3", "stolen", 5, 1))  # as AddMilestone or a next milestone would
        with pytest.raises(Rejected) as refused:
            await repo.save(mine, "MilestoneAdded", NOW)
        assert refused.value.reason_code == "id_taken"
        await conn.rollback()
    async with engine.connect() as conn:
        owner = await ContractRepository(conn).get("c-3", lock=False)
        assert [(m.milestone_id, m.title, m.amount) for m in owner.milestones] == [("m-3", "M", 1_000)]


async def test_a_contract_id_written_twice_is_refused_id_taken(engine):
    async with engine.begin() as conn:
        await ContractRepository(conn).save(offer("c-5", "m-5"), "SendOffer", NOW)
    async with engine.connect() as conn:
        await conn.begin()
        with pytest.raises(Rejected) as refused:
            await ContractRepository(conn).save(offer("c-5", "m-6"), "SendOffer", NOW)
        assert refused.value.reason_code == "id_taken"
        await conn.rollback()


async def test_a_batch_that_leaves_a_new_contracts_save_for_later_fails_when_its_id_was_taken(engine):
    """Handled without a savepoint per message, a new contract's save is left for later and its claims taken as
    made (driver_sql.write_later): a claim refused fails the transaction (IsolationNeeded), and the consumer
    handles the batch again, where the save runs at once and is refused `id_taken` (the test above)."""
    async with engine.begin() as conn:
        await ContractRepository(conn).save(offer("c-7", "m-7"), "SendOffer", NOW)
    async with engine.connect() as conn:
        await conn.begin()
        driver_sql.leave_writes_for_later(conn, True)
        await ContractRepository(conn).save(offer("c-8", "m-8"), "SendOffer", NOW)  # free: taken as claimed
        await ContractRepository(conn).save(offer("c-9", "m-7"), "SendOffer", NOW)  # m-7 is c-7's
        with pytest.raises(IsolationNeeded):
            await driver_sql.write_what_is_left(conn)
        await conn.rollback()
        driver_sql.leave_writes_for_later(conn, False)
    async with engine.connect() as conn:
        assert await ContractRepository(conn).get("c-8", lock=False) is None
        owner = await ContractRepository(conn).get("c-7", lock=False)
        assert [(m.milestone_id, m.amount) for m in owner.milestones] == [("m-7", 1_000)]
