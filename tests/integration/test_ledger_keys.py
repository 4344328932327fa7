"""Escrow's ledger on real PostgreSQL with hostile ids (issue 9, item 1).

Ids that contain ':' or equal the words escrow's old keys were joined from: each hold, release and bonus
still makes its own ledger transaction, each milestone its own escrow account, and the ledger check is
clean. The migration from the joined-string keys converts existing rows.
"""

import asyncio
import uuid
from datetime import date, timedelta

import asyncpg
import pytest
import pytest_asyncio
from platform_runtime.clock import SystemClock
from platform_runtime.migrate import alembic_config, upgrade
from platform_runtime.relay import asyncpg_dsn, notify_channel
from platform_runtime.unit_of_work import Cause, UnitOfWork
from platform_schemas import new_envelope
from platform_schemas.commands.saga import (
    BonusToPost, HoldEscrow, MilestoneAmount, PostBonus, PostBonuses, ReleaseEscrow,
)
from sqlalchemy.ext.asyncio import create_async_engine

from escrow.adapters.ledger_repository import LedgerRepository
from escrow.adapters.tables import metadata
from escrow.bootstrap import definition
from escrow.domain import ledger
from escrow.service_layer import bonuses, handlers
from escrow.service_layer.context import Context
from tests.support.probe_service import drop_database, scratch_database
from tests.support.processes import DB_PREFIX

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def escrow_db(infra):
    name = f"{DB_PREFIX}it_ledger_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(infra.postgres_url, name)
    yield url
    await drop_database(infra.postgres_url, name)


async def run(url: str, handler, cmd) -> list[str]:
    engine = create_async_engine(url)
    try:
        uow = UnitOfWork(engine, metadata.tables, "escrow",
                         SystemClock(), notify_channel("escrow"))
        async with uow:
            uow.cause = Cause(str(uuid.uuid4()), "corr", "system")
            envelope = new_envelope(cmd, subject="bonus-batch-2026-12-01", actor="system", source="billing")
            await handler(cmd, Context(uow, envelope, pending_for=timedelta(days=5)))
            published = [o.envelope.type for o in uow.outgoing]
            await uow.commit()
            return published
    finally:
        await engine.dispose()


async def ledger_check(url: str) -> list[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            postings, stored, held = await LedgerRepository(conn).everything()
        return ledger.check(postings, stored, held)
    finally:
        await engine.dispose()


def hold(hold_id: str, contract: str, milestone: str, amount: int = 10_000) -> HoldEscrow:
    return HoldEscrow(hold_id=hold_id, saga_id="s", charge_id="ch", contract_id=contract, client_id="cl:USD",
                      currency="USD", milestones=[MilestoneAmount(milestone_id=milestone, amount=amount)])


async def test_hostile_ids_each_get_their_own_accounts_and_transactions(escrow_db):
    await asyncio.to_thread(upgrade, definition.migrations_dir, escrow_db)
    # The old keys: escrow:<contract>:<milestone> made these two one account; the bare transaction id
    # made the bonus below swallow the second hold (charged, never held).
    assert await run(escrow_db, handlers.hold_escrow, hold("fund-1:hold", "a:b", "c")) == ["EscrowFunded"]
    assert await run(escrow_db, handlers.hold_escrow, hold("fund-2:hold", "a", "b:c", 7_000)) == ["EscrowFunded"]
    assert await run(escrow_db, bonuses.post_bonus, PostBonus(
        bonus_id="fund-3:hold", contract_id="a", client_id="cl", freelancer_id="fl", amount=500, currency="USD",
        charge_id="ch")) == ["BonusPosted"]
    assert await run(escrow_db, handlers.hold_escrow, hold("fund-3:hold", "a", "escrow", 3_000)) == ["EscrowFunded"]
    assert await run(escrow_db, handlers.release_escrow, ReleaseEscrow(
        release_id="fund-1:hold", saga_id="s", contract_id="a:b", milestone_id="c", client_id="cl:USD",
        freelancer_id="fl", amount=10_000, currency="USD")) == ["EscrowReleased"]
    # The same step again is answered again, and changes nothing (the transaction count below).
    assert await run(escrow_db, handlers.hold_escrow, hold("fund-2:hold", "a", "b:c", 7_000)) == ["EscrowFunded"]

    conn = await asyncpg.connect(asyncpg_dsn(escrow_db))
    try:
        held = {(r["contract_id"], r["milestone_id"]): r["held"] for r in await conn.fetch(
            "SELECT contract_id, milestone_id, funded - released - refunded AS held FROM holdings")}
        balances = {(r["kind"], r["owner_id"], r["sub_id"]): r["balance"] for r in await conn.fetch(
            "SELECT kind, owner_id, sub_id, balance FROM account_balances")}
        transactions = await conn.fetchval("SELECT count(*) FROM ledger_transactions")
    finally:
        await conn.close()
    assert held == {("a:b", "c"): 0, ("a", "b:c"): 7_000, ("a", "escrow"): 3_000}
    assert balances[("escrow", "a", "b:c")] == 7_000 and balances[("escrow", "a:b", "c")] == 0
    assert balances[("freelancer_pending", "fl", "")] == 10_500 and balances[("client", "cl:USD", "")] == 0
    assert transactions == 5  # hold, hold, bonus, hold, release
    assert await ledger_check(escrow_db) == []


async def test_the_migration_converts_joined_string_keys_to_structured_ones(escrow_db):
    from alembic import command

    await asyncio.to_thread(command.upgrade, alembic_config(definition.migrations_dir, escrow_db), "7c1e5a9d2b40")
    conn = await asyncpg.connect(asyncpg_dsn(escrow_db))
    try:
        await conn.execute("""
            INSERT INTO ledger_transactions (transaction_id, kind, contract_id) VALUES ('s1:hold', 'fund', 'c-1');
            INSERT INTO postings (posting_id, transaction_id, debit_account, credit_account, amount, currency) VALUES
              ('s1:hold:charge', 's1:hold', 'gateway:USD', 'client:cl:1:USD', 900, 'USD'),
              ('s1:hold:m:1', 's1:hold', 'client:cl:1:USD', 'escrow:c-1:m:1', 900, 'USD');
            INSERT INTO account_balances (account, currency, balance) VALUES
              ('gateway:USD', 'USD', -900), ('client:cl:1:USD', 'USD', 0), ('escrow:c-1:m:1', 'USD', 900);
            INSERT INTO escrow_contracts VALUES ('c-1', 'cl:1', 'USD');
            INSERT INTO holdings (contract_id, milestone_id, currency, funded) VALUES ('c-1', 'm:1', 'USD', 900);
        """)
        await asyncio.to_thread(upgrade, definition.migrations_dir, escrow_db)
        rows = await conn.fetch("SELECT * FROM postings ORDER BY leg")
        balances = {(r["kind"], r["owner_id"], r["sub_id"], r["currency"]): r["balance"]
                    for r in await conn.fetch("SELECT * FROM account_balances")}
    finally:
        await conn.close()
    assert [(r["transaction_kind"], r["leg"], r["posting_id"]) for r in rows] == [
        ("fund", 0, "s1:hold:charge"), ("fund", 1, "s1:hold:m:1")]
    assert (rows[1]["credit_kind"], rows[1]["credit_owner_id"], rows[1]["credit_sub_id"]) == ("escrow", "c-1", "m:1")
    assert balances == {("gateway", "", "", "USD"): -900, ("client", "cl:1", "", "USD"): 0,
                        ("escrow", "c-1", "m:1", "USD"): 900}
    assert await ledger_check(escrow_db) == []


async def test_a_resent_post_bonuses_credits_each_bonus_once_and_answers_for_all_of_them(escrow_db):
    """The bonuses' ledger transactions are claimed in one statement (ON CONFLICT DO NOTHING): a request sent again,
    overlapping the first and naming a bonus twice, credits only what is new and still answers for every bonus."""
    await asyncio.to_thread(upgrade, definition.migrations_dir, escrow_db)

    def request(*ids: str) -> PostBonuses:
        return PostBonuses(business_date=date(2026, 12, 1), bonuses=[
            BonusToPost(bonus_id=i, contract_id="c-1", client_id="cl", freelancer_id="fl", amount=100,
                        currency="USD", charge_id="bc-1") for i in ids])

    assert await run(escrow_db, bonuses.post_bonuses, request("b-1", "b-2")) == [
        "BonusPosted", "BonusPosted", "BonusesPosted"]
    assert await run(escrow_db, bonuses.post_bonuses, request("b-2", "b-3", "b-3", "b-1")) == [
        "BonusPosted", "BonusesPosted"]  # b-3 alone is new, once
    conn = await asyncpg.connect(asyncpg_dsn(escrow_db))
    try:
        pending = await conn.fetchval("SELECT balance FROM account_balances WHERE kind = 'freelancer_pending'")
        postings = await conn.fetchval("SELECT count(*) FROM postings WHERE transaction_kind = 'bonus'")
    finally:
        await conn.close()
    assert pending == 300 and postings == 6  # three bonuses, two legs each
    assert await ledger_check(escrow_db) == []


async def test_a_postings_id_is_kept_unique_by_the_primary_key_alone(escrow_db):
    """The posting id is derived from (kind, transaction id, leg): the primary key keeps it unique, and no other
    index is written for it (migration d5a8c3e1f274). Downgraded, the unique constraint comes back."""
    from alembic import command

    config = alembic_config(definition.migrations_dir, escrow_db)
    await asyncio.to_thread(upgrade, definition.migrations_dir, escrow_db)
    await run(escrow_db, handlers.hold_escrow, hold("h1", "c-1", "m-1"))
    conn = await asyncpg.connect(asyncpg_dsn(escrow_db))
    try:
        indexes = {r["indexname"] for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'postings'")}
        row = dict(await conn.fetchrow("SELECT * FROM postings WHERE leg = 0"))
        with pytest.raises(asyncpg.UniqueViolationError):  # the same posting again: refused by the primary key
            await conn.execute(f"INSERT INTO postings ({', '.join(row)}) "
                               f"VALUES ({', '.join(f'${i + 1}' for i in range(len(row)))})", *row.values())
        await asyncio.to_thread(command.downgrade, config, "9e4a2c7b1f56")
        downgraded = {r["indexname"] for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'postings'")}
        await asyncio.to_thread(upgrade, definition.migrations_dir, escrow_db)
    finally:
        await conn.close()
    [primary_key] = indexes  # the only index of the table
    assert primary_key.startswith("postings_pkey")
    assert downgraded == indexes | {"postings_posting_id_key"}
    assert await ledger_check(escrow_db) == []
