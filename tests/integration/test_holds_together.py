"""A batch's holds written together, on real PostgreSQL (issue 10, thirty-fifth step): escrow's `_Holds` writes a
run of holds left for later in one statement, each table once, where each hold used to be a statement of its own.

What must hold: whatever the batch (clients and contracts shared between its holds, a contract funded twice in
it, a contract opened before it), written together it leaves exactly the rows the same holds leave handled one at
a time, each in its savepoint; and it is taken back whole (IsolationNeeded: the consumer handles the batch again,
one savepoint each) exactly when one of its holds would not be funded anew, handled alone: a step sent again
(answered again, with no effect), or refused (a currency other than its contract's). A batch is never handled
again for nothing.
"""

import uuid
from datetime import timedelta
from unittest.mock import patch

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from platform_runtime.errors import IsolationNeeded, Rejected
from platform_runtime.relay import asyncpg_dsn
from platform_runtime.unit_of_work import Cause
from platform_schemas.commands.saga import HoldEscrow, MilestoneAmount

from escrow.adapters import ledger_repository
from escrow.adapters.tables import metadata
from escrow.bootstrap import definition
from escrow.domain import ledger
from escrow.service_layer import handlers
from escrow.service_layer.context import Context
from tests.integration.test_generic_plans import EXECUTIONS, _generic_plan, _reads
from tests.integration.test_ledger_keys import ledger_check
from tests.support.probe_service import ServiceDatabase, migrated_databases

pytestmark = pytest.mark.integration

# Every row a hold writes, in an order that does not depend on the order they were written in.
TABLES = {
    "ledger_transactions": "SELECT kind, transaction_id, contract_id, milestone_id FROM ledger_transactions",
    "postings": "SELECT transaction_kind, transaction_id, leg, posting_id, debit_kind, debit_owner_id, debit_sub_id,"
                " credit_kind, credit_owner_id, credit_sub_id, amount, currency FROM postings",
    "account_balances": "SELECT kind, owner_id, sub_id, currency, balance FROM account_balances",
    "escrow_contracts": "SELECT contract_id, client_id, currency FROM escrow_contracts",
    "holdings": "SELECT contract_id, milestone_id, currency, funded, released, refunded FROM holdings",
}


class Escrow(ServiceDatabase):
    async def ledger(self) -> dict[str, list[tuple]]:
        return await self.rows(TABLES, sort=True)

    async def empty(self) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(self.url))
        try:
            await conn.execute(f"TRUNCATE {', '.join(TABLES)}, processed_messages, outbox")
        finally:
            await conn.close()

    async def together(self, cmds: list[HoldEscrow]) -> None:
        """As the consumer's first try at a batch: one transaction, no savepoint per message, the holds left for
        later and written at commit."""
        async with self.new_uow() as uow:
            uow.savepoint_per_message = False
            uow.cause = Cause(str(uuid.uuid4()), "corr", "system")
            for cmd in cmds:
                await handlers.hold_escrow(cmd, Context(uow, pending_for=timedelta(days=5)))
            await uow.commit()

    async def one_at_a_time(self, cmds: list[HoldEscrow]) -> list[str]:
        """As the consumer's second try: one transaction, a savepoint per hold, each written at once and answered;
        what each hold came to (EscrowFunded, or the reason it was refused)."""
        outcomes = []
        async with self.new_uow() as uow:
            uow.cause = Cause(str(uuid.uuid4()), "corr", "system")
            for cmd in cmds:
                savepoint = await uow.session.begin_nested()
                try:
                    await handlers.hold_escrow(cmd, Context(uow, pending_for=timedelta(days=5)))
                    await savepoint.commit()
                    outcomes.append("EscrowFunded")
                except Rejected as rejection:
                    await savepoint.rollback()
                    outcomes.append(rejection.reason_code)
            await uow.commit()
        return outcomes


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def escrows(infra):
    """Two escrow databases: one for the holds written together, one for the same holds one at a time."""
    async with migrated_databases(infra.postgres_url, "together", definition.migrations_dir, metadata, "escrow",
                                  2) as found:
        yield [Escrow(db.engine, metadata, "escrow") for db in found]


def one_hold(hold_id: str, contract: str) -> ledger_repository._Hold:
    """A hold as escrow's handler leaves it for later."""
    tx = ledger.TransactionId(ledger.FUND, hold_id)
    return ledger_repository._Hold(ledger_repository.LedgerTransaction(
        tx, contract, None, ledger.fund(tx, "cl", "USD", [(contract, "m1", 100)])), "cl",
        ledger_repository.Funding(contract, "USD", {"m1": 100}))


def hold(hold_id: str, contract: str, client: str, milestones, currency: str = "USD") -> HoldEscrow:
    return HoldEscrow(hold_id=hold_id, saga_id=f"s-{hold_id}", charge_id=f"ch-{hold_id}", contract_id=contract,
                      client_id=client, currency=currency,
                      milestones=[MilestoneAmount(milestone_id=m, amount=a) for m, a in milestones])


# A batch: holds drawn from a few steps, contracts, clients and milestones, so that they share rows: a contract
# funded twice in one batch, the same milestone twice in one hold, a step sent twice, a contract in two currencies.
def holds_drawn(max_size: int):
    return st.lists(st.builds(
        hold, hold_id=st.sampled_from([f"h{n}" for n in range(30)]),
        contract=st.sampled_from(["c1", "c2", "c3", "c4"]), client=st.sampled_from(["cl1", "cl2"]),
        milestones=st.lists(st.tuples(st.sampled_from(["m1", "m2", "m3"]), st.integers(1, 10**12)), min_size=1,
                            max_size=3),
        currency=st.sampled_from(["USD"] * 7 + ["EUR"])), min_size=1, max_size=max_size)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=holds_drawn(3), batch=holds_drawn(8))
async def test_holds_written_together_leave_what_they_leave_one_at_a_time_or_the_batch_is_handled_again(
        escrows, before, batch):
    together, alone = escrows
    for escrow in escrows:
        await escrow.empty()
        await escrow.one_at_a_time(before)  # what the ledger had before the batch, the same in both
    recorded = {row[1] for row in (await alone.ledger())["ledger_transactions"]}
    outcomes = await alone.one_at_a_time(batch)
    # Funded anew, each: no hold refused alone, and none a step recorded already (answered again, no effect).
    steps = [cmd.hold_id for cmd in batch]
    all_new = set(outcomes) == {"EscrowFunded"} and len(set(steps)) == len(steps) and not recorded & set(steps)
    try:
        await together.together(batch)
    except IsolationNeeded:
        assert not all_new, (outcomes, steps, recorded)  # taken back whole, and never for nothing
        event("taken back")
        await together.one_at_a_time(batch)  # what the consumer does next
    else:
        assert all_new, (outcomes, steps, recorded)
        event("written together")
    assert await together.ledger() == await alone.ledger()
    assert await ledger_check(together.url) == []


async def test_a_batch_of_holds_is_one_statement_whatever_their_number(escrows):
    together, _ = escrows
    await together.empty()
    runs = []
    write_all = ledger_repository._Holds.write_all

    async def counted(self, driver, holds):
        runs.append(len(holds))
        await write_all(self, driver, holds)

    batch = [hold(f"n{i}", f"c{i % 7}", f"cl{i % 3}", [(f"m{i % 2}", 100 + i)]) for i in range(50)]
    with patch.object(ledger_repository._Holds, "write_all", counted):
        await together.together(batch)
    assert runs == [50]
    assert len((await together.ledger())["postings"]) == 100
    assert await ledger_check(together.url) == []


async def test_the_statement_keeps_one_plan_that_probes_the_contracts_by_key(escrows):
    """Its arrays are read through planned_once: PostgreSQL keeps one generic plan whatever the batch's size, and
    that plan finds a hold's contract by key, however many contracts escrow has."""
    together, _ = escrows
    await together.empty()
    conn = await asyncpg.connect(asyncpg_dsn(together.url))
    try:
        await conn.execute("INSERT INTO escrow_contracts (contract_id, client_id, currency)"
                           " SELECT 'old-' || n, 'cl', 'USD' FROM generate_series(1, 20000) AS n")
        await conn.execute("ANALYZE escrow_contracts")
        holds = [one_hold(f"p{i}", f"new-{i}") for i in range(EXECUTIONS)]
        sql = ledger_repository._HOLDS_SQL.sql
        transaction = conn.transaction()
        await transaction.start()
        try:
            statement = await conn.prepare(sql)
            for one in holds:
                await statement.fetch(*ledger_repository.holds_arguments([one]))
            plans = await conn.fetchrow("SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                                        " WHERE statement = $1", sql)
        finally:
            await transaction.rollback()
        assert plans["generic_plans"] >= EXECUTIONS - 5, dict(plans)
        plan = await _generic_plan(conn, sql, *ledger_repository.holds_arguments(holds[:2]))
        assert _reads(plan, "escrow_contracts") == {"escrow_contracts_pkey"}, _reads(plan, "escrow_contracts")
    finally:
        await conn.close()
