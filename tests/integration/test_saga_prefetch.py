"""What a batch reads at once (issue 10), on real PostgreSQL: its sagas preloaded in two statements, its offers'
parties in one. Each handler still reads its saga, contract and accounts as the batch's earlier handlers left
them, and the sagas' preload holds its rows locked.

The handlers of one fetched batch share one transaction; contracts reads the sagas its replies answer, each
locked with its contract, and the contracts' milestones, before the first handler runs
(`SagaRepository.preload`, called by `sagas/replies.py: read_sagas_ahead`). Two sagas of one contract in one batch,
or the same saga answered twice, must not read a row the batch has changed since.
"""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
import pytest_asyncio
from sqlalchemy import text

from contracts.adapters.repositories import AccountRepository, ContractRepository, SagaRepository, Seen
from contracts.bootstrap import definition
from contracts.domain.accounts import SUSPENDED, Account
from contracts.domain.contracts import Contract, Milestone
from contracts.domain.sagas import FundData, MilestoneAmount, Saga
from tests.support.probe_service import migrated_engine

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 3, tzinfo=timezone.utc)


@pytest_asyncio.fixture(loop_scope="session")
async def engine(infra):
    async with migrated_engine(infra.postgres_url, "prefetch", definition.migrations_dir) as engine:
        yield engine


def fund_saga(contract_id: str, started_by: str, milestone_id: str) -> Saga:
    data = FundData(offer=False, currency="USD", milestones=[MilestoneAmount(milestone_id=milestone_id, amount=100)])
    return Saga.start("fund", contract_id, None, started_by, "charge", data, NOW)


async def a_contract_with_two_sagas(engine, contract_id: str) -> tuple[Saga, Saga]:
    contract = Contract(contract_id, "cl", "fl", "T", "USD", "first_milestone", "funding",
                        [Milestone(f"{contract_id}-m{i}", f"M{i}", 100, i) for i in range(2)],
                        created_at=NOW, is_new=True)
    first, second = (fund_saga(contract_id, f"{contract_id}-cmd{i}", f"{contract_id}-m{i}") for i in range(2))
    async with engine.begin() as conn:
        await ContractRepository(conn).save(contract, "SendOffer", NOW, saga=first)
        await SagaRepository(conn).save(second)
    return first, second


async def handle(conn, seen: Seen, saga_id: str, new_title: str) -> tuple[Saga, Contract]:
    """What a reply's handler does with its saga and contract: read both, change both, save."""
    contracts = ContractRepository(conn, seen)
    saga = await SagaRepository(conn, seen).get(saga_id)
    contract = await contracts.get(saga.contract_id)
    contract.milestones[0].title = new_title
    saga.advance("ClientCharged", "hold", NOW)
    await contracts.save(contract, "ClientCharged", NOW, saga=saga)
    return saga, contract


async def test_the_second_saga_of_a_contract_in_a_batch_reads_the_contract_as_the_first_left_it(engine):
    first, second = await a_contract_with_two_sagas(engine, "c-pre-1")
    async with engine.connect() as conn:
        await conn.begin()
        batch = await SagaRepository(conn).preload([second.saga_id, first.saga_id, "no-such-saga"])
        assert set(batch.sagas) == {first.saga_id, second.saga_id}
        await handle(conn, Seen(batch=batch), first.saga_id, "changed by the first")
        # The contract was taken by the first handler: the second saga is no longer served from the preload.
        assert batch.sagas == {} and batch.milestones == {}
        _, contract = await handle(conn, Seen(batch=batch), second.saga_id, "changed by the second")
        await conn.commit()
    assert contract.milestones[0].title == "changed by the second"
    async with engine.connect() as conn:
        stored = await ContractRepository(conn).get("c-pre-1", lock=False)
        assert stored.milestones[0].title == "changed by the second"


async def test_a_saga_answered_twice_in_a_batch_is_read_the_second_time_as_the_first_answer_left_it(engine):
    first, _ = await a_contract_with_two_sagas(engine, "c-pre-2")
    async with engine.connect() as conn:
        await conn.begin()
        batch = await SagaRepository(conn).preload([first.saga_id, first.saga_id])
        await handle(conn, Seen(batch=batch), first.saga_id, "once")
        again = await SagaRepository(conn, Seen(batch=batch)).get(first.saga_id)
        assert again.step == "hold"  # as the first handler saved it, not as the batch found it ("charge")
        await conn.rollback()


async def test_a_contract_saved_by_an_earlier_handler_is_not_served_stale_from_the_preload(engine):
    first, _ = await a_contract_with_two_sagas(engine, "c-pre-3")
    async with engine.connect() as conn:
        await conn.begin()
        batch = await SagaRepository(conn).preload([first.saga_id, fund_saga("c-other", "x", "y").saga_id])
        # Another handler of the batch changes the contract without its saga (a command would, by its own get).
        contracts = ContractRepository(conn, Seen(batch=batch))
        contract = await contracts.get("c-pre-3")
        contract.milestones[1].title = "changed by another handler"
        await contracts.save(contract, "MilestoneEdited", NOW)
        assert first.saga_id not in batch.sagas
        _, seen_by_the_reply = await handle(conn, Seen(batch=batch), first.saga_id, "changed by the reply")
        assert seen_by_the_reply.milestones[1].title == "changed by another handler"
        await conn.rollback()


async def test_the_preloaded_sagas_and_contracts_stay_locked_until_the_batch_commits(engine):
    first, _ = await a_contract_with_two_sagas(engine, "c-pre-4")
    async with engine.connect() as batch_conn, engine.connect() as other:
        await batch_conn.begin()
        await SagaRepository(batch_conn).preload([first.saga_id])
        await other.begin()
        # Another transaction's lock of the contract waits for the batch (a command on the same contract would).
        await other.execute(text("SET LOCAL lock_timeout = '300ms'"))
        with pytest.raises(Exception, match="lock timeout"):
            await other.execute(text("SELECT 1 FROM contracts WHERE contract_id = 'c-pre-4' FOR UPDATE"))
        await other.rollback()
        await batch_conn.commit()
        await other.begin()
        await asyncio.wait_for(other.execute(text("SELECT 1 FROM contracts WHERE contract_id = 'c-pre-4' FOR UPDATE")), 5)
        await other.rollback()


# -- the parties of a batch's offers, read at once (offers.read_parties_ahead) ------------------------


async def test_an_account_saved_earlier_in_the_batch_is_read_as_saved_not_as_preloaded(engine):
    async with engine.begin() as conn:
        for account_id, role in (("pre-client", "client"), ("pre-freelancer", "freelancer")):
            await AccountRepository(conn).add(Account(account_id, role, "N", f"{account_id}@example.test"))
    async with engine.connect() as conn:
        await conn.begin()
        preloaded = await AccountRepository(conn).get_many(["pre-client", "pre-freelancer"])
        # A SuspendAccount before the offer in the same batch: the offer's read sees the suspension.
        suspending = AccountRepository(conn, preloaded)
        client = await suspending.get("pre-client", lock=True)
        client.status = SUSPENDED
        await suspending.save(client)
        read = await AccountRepository(conn, preloaded).get_many(["pre-client", "pre-freelancer"])
        assert read["pre-client"].status == SUSPENDED and "pre-client" not in preloaded
        # A copy each time: what one handler changes on its read is not what the next one reads.
        read["pre-freelancer"].past_due["USD"] = 5
        assert (await AccountRepository(conn, preloaded).get_many(["pre-freelancer"]))["pre-freelancer"].past_due == {}
        await conn.rollback()


async def test_activity_recorded_earlier_in_the_batch_is_seen_by_the_preload_as_the_database_has_it(engine):
    async with engine.begin() as conn:
        await AccountRepository(conn).add(Account("pre-active", "client", "N", "a@example.test"))
    async with engine.connect() as conn:
        await conn.begin()
        preloaded = await AccountRepository(conn).get_many(["pre-active"])
        assert preloaded["pre-active"].last_activity_at is None
        await AccountRepository(conn, preloaded).record_activity(["pre-active"], NOW, timedelta(hours=1))
        read = await AccountRepository(conn, preloaded).get_many(["pre-active"])
        stored = await AccountRepository(conn).get_many(["pre-active"])
        assert read["pre-active"].last_activity_at == stored["pre-active"].last_activity_at == NOW
        await conn.rollback()
