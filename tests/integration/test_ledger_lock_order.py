"""Escrow's balances are locked in one order across a whole transaction, not only within a statement: the shared
gateway account first. Two escrow processes' batches of holds for the same clients then wait for each other in
turn and never deadlock. With the gateway locked last, a batch held it (from its first hold) while waiting for a
client's balance that the other batch had locked on its way to the gateway: PostgreSQL broke the cycle after a
second, and the batch was retried with a backoff of seconds (issue 10: the scaling curve with 4 processes)."""

import asyncio
import time
import uuid
from datetime import timedelta

import asyncpg
import pytest
from platform_runtime.clock import SystemClock
from platform_runtime.relay import asyncpg_dsn, notify_channel
from platform_runtime.unit_of_work import Cause, UnitOfWork
from platform_schemas.commands.saga import HoldEscrow, MilestoneAmount
from sqlalchemy.ext.asyncio import create_async_engine

from escrow.adapters.tables import metadata
from escrow.service_layer import handlers
from escrow.service_layer.context import Context
from tests.integration.test_ledger_keys import ledger_check
from tests.integration.test_ledger_refusals import escrow_db  # noqa: F401  (a fixture)

pytestmark = pytest.mark.integration


def hold(contract: str, client: str) -> HoldEscrow:
    return HoldEscrow(hold_id=f"{contract}:hold", saga_id=contract, charge_id=f"{contract}:charge",
                      contract_id=contract, client_id=client, currency="USD",
                      milestones=[MilestoneAmount(milestone_id="m1", amount=10_000)])


async def carry_out(uow: UnitOfWork, cmd: HoldEscrow) -> None:
    uow.cause = Cause(str(uuid.uuid4()), cmd.saga_id, "system")
    await handlers.hold_escrow(cmd, Context(uow, pending_for=timedelta(days=5)))


async def waiting_for_a_lock(url: str, deadline_s: float = 10.0) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        deadline = time.monotonic() + deadline_s
        while not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND wait_event_type = 'Lock'"):
            assert time.monotonic() < deadline, "the second batch never waited for the first"
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def test_two_batches_of_holds_for_the_same_clients_in_other_orders_wait_in_turn_and_never_deadlock(escrow_db):
    engine = create_async_engine(escrow_db)
    try:
        first, second = (UnitOfWork(engine, metadata.tables, "escrow", SystemClock(), notify_channel("escrow"))
                         for _ in range(2))
        async with first, second:
            await carry_out(first, hold(f"c-a-{uuid.uuid4().hex[:6]}", "cl-1"))
            # The second batch's first hold is for cl-2; it must wait for the first batch (the gateway's balance).
            other = asyncio.create_task(carry_out(second, hold(f"c-b-{uuid.uuid4().hex[:6]}", "cl-2")))
            await waiting_for_a_lock(escrow_db)
            await carry_out(first, hold(f"c-c-{uuid.uuid4().hex[:6]}", "cl-2"))  # cl-2: free, or a deadlock
            await first.commit()
            await asyncio.wait_for(other, 30)
            await second.commit()
    finally:
        await engine.dispose()
    assert await ledger_check(escrow_db) == []
