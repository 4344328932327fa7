"""Escrow's ledger on real PostgreSQL: a step is claimed (its ledger transaction recorded) before its checks, in
as few statements as possible, so a refused step must take everything back with its savepoint, as the
dispatcher rolls it back: no claim left to make the step look done, no posting, no balance moved. The same step
sent again after a refusal is handled afresh; an overdraft is refused by the domain's rule; the books balance.
"""

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import pytest
import pytest_asyncio
from platform_runtime.clock import SystemClock
from platform_runtime.errors import IsolationNeeded, Rejected
from platform_runtime.relay import asyncpg_dsn, notify_channel
from platform_runtime.unit_of_work import Cause, UnitOfWork
from platform_runtime.migrate import upgrade
from platform_schemas.commands.saga import HoldEscrow, MilestoneAmount, ReleaseEscrow
from sqlalchemy.ext.asyncio import create_async_engine

from escrow.adapters.ledger_repository import LedgerTransaction
from escrow.adapters.tables import metadata
from escrow.bootstrap import definition
from escrow.domain import ledger
from escrow.service_layer import handlers
from escrow.service_layer.context import Context
from tests.integration.test_ledger_keys import ledger_check
from tests.support.probe_service import drop_database, scratch_database
from tests.support.processes import DB_PREFIX

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def escrow_db(infra):
    name = f"{DB_PREFIX}it_refusals_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(infra.postgres_url, name)
    await asyncio.to_thread(upgrade, definition.migrations_dir, url)
    yield url
    await drop_database(infra.postgres_url, name)


async def step(url: str, handler, cmd) -> str:
    """The handler in a savepoint of a transaction that commits, as the dispatcher runs it: what it published,
    or the reason code of its refusal."""
    engine = create_async_engine(url)
    try:
        uow = UnitOfWork(engine, metadata.tables, "escrow",
                         SystemClock(), notify_channel("escrow"))
        async with uow:
            uow.cause = Cause(str(uuid.uuid4()), "corr", "system")
            savepoint = await uow.session.begin_nested()
            try:
                await handler(cmd, Context(uow, pending_for=timedelta(days=5)))
                await savepoint.commit()
                outcome = ",".join(o.envelope.type for o in uow.outgoing)
            except Rejected as rejection:
                await savepoint.rollback()
                uow.outgoing.clear()
                outcome = rejection.reason_code
            await uow.commit()
            return outcome
    finally:
        await engine.dispose()


def hold(hold_id: str, currency: str = "USD", milestones=(("m1", 10_000),)) -> HoldEscrow:
    return HoldEscrow(hold_id=hold_id, saga_id="s", charge_id="ch", contract_id="c", client_id="cl",
                      currency=currency, milestones=[MilestoneAmount(milestone_id=m, amount=a) for m, a in milestones])


def release(release_id: str, amount: int) -> ReleaseEscrow:
    return ReleaseEscrow(release_id=release_id, saga_id="s", contract_id="c", milestone_id="m1", client_id="cl",
                         freelancer_id="fl", amount=amount, currency="USD")


async def rows(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def test_a_refused_step_leaves_no_claim_and_the_same_step_is_handled_afresh_later(escrow_db):
    # One hold naming a milestone twice: its holding gets both amounts.
    assert await step(escrow_db, handlers.hold_escrow, hold("h1", milestones=(("m1", 6_000), ("m1", 4_000)))) \
        == "EscrowFunded"
    assert await step(escrow_db, handlers.hold_escrow, hold("h2", currency="EUR")) == "currency_mismatch"
    assert await step(escrow_db, handlers.release_escrow, release("r1", 12_000)) == "invalid_state"
    assert await rows(escrow_db, "SELECT 1 FROM ledger_transactions WHERE transaction_id IN ('h2', 'r1')") == []

    assert await step(escrow_db, handlers.release_escrow, release("r1", 10_000)) == "EscrowReleased"
    assert await step(escrow_db, handlers.release_escrow, release("r1", 10_000)) == "EscrowReleased"  # again: no effect
    assert await step(escrow_db, handlers.hold_escrow, hold("h1")) == "EscrowFunded"  # again: no effect
    [holding] = await rows(escrow_db, "SELECT funded, released, refunded FROM holdings")
    assert tuple(holding) == (10_000, 10_000, 0)
    balances = {(r["kind"], r["owner_id"]): r["balance"] for r in await rows(
        escrow_db, "SELECT kind, owner_id, balance FROM account_balances")}
    assert balances == {("gateway", ""): -10_000, ("client", "cl"): 0, ("escrow", "c"): 0,
                        ("freelancer_pending", "fl"): 10_000}
    assert await ledger_check(escrow_db) == []


async def test_postings_that_would_overdraw_an_account_are_refused_and_nothing_moves(escrow_db):
    async def overdraw(_cmd, ctx: Context) -> None:
        tx = ledger.TransactionId(ledger.TAKE_BACK, "t1")
        await ctx.ledger.append_all([LedgerTransaction(tx, "c", None, ledger.take_back(
            tx, "fl", "cl", 500, "USD", still_pending=0))])

    assert await step(escrow_db, overdraw, None) == "insufficient_funds"
    assert await rows(escrow_db, "SELECT 1 FROM ledger_transactions") == []
    assert await rows(escrow_db, "SELECT 1 FROM account_balances") == []
    assert await ledger_check(escrow_db) == []


async def holds_in_one_batch(url: str, *cmds: HoldEscrow) -> None:
    """The holds handled as the consumer's first try at a batch does: one transaction, no savepoint per message,
    their writes left for later (driver_sql.write_later) and written together at commit."""
    engine = create_async_engine(url)
    try:
        uow = UnitOfWork(engine, metadata.tables, "escrow", SystemClock(), notify_channel("escrow"))
        async with uow:
            uow.savepoint_per_message = False
            uow.cause = Cause(str(uuid.uuid4()), "corr", "system")
            for cmd in cmds:
                await handlers.hold_escrow(cmd, Context(uow, pending_for=timedelta(days=5)))
            assert [o.envelope.type for o in uow.outgoing] == ["EscrowFunded"] * len(cmds)
            await uow.commit()
    finally:
        await engine.dispose()


async def test_holds_left_for_later_are_written_together_and_one_not_as_taken_for_granted_fails_the_batch(infra):
    name = f"{DB_PREFIX}it_holds_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(infra.postgres_url, name)
    try:
        await asyncio.to_thread(upgrade, definition.migrations_dir, url)
        await holds_in_one_batch(url, hold("b1"), hold("b2", milestones=(("m2", 500), ("m3", 700))))
        funded = {r["milestone_id"]: r["funded"] for r in await rows(url, "SELECT milestone_id, funded FROM holdings")}
        assert funded == {"m1": 10_000, "m2": 500, "m3": 700}
        assert await ledger_check(url) == []
        # A hold in another currency, or one sent again: the batch fails as a whole (IsolationNeeded) and the
        # consumer handles it again one savepoint each, where the test above shows each answered.
        for odd_one in (hold("b3", currency="EUR"), hold("b1")):
            with pytest.raises(IsolationNeeded):
                await holds_in_one_batch(url, hold("b4"), odd_one)
        assert await rows(url, "SELECT 1 FROM ledger_transactions WHERE transaction_id IN ('b3', 'b4')") == []
        assert await ledger_check(url) == []
    finally:
        await drop_database(infra.postgres_url, name)
