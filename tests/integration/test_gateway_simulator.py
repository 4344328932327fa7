"""The gateway simulator against real PostgreSQL: its outage and refusal switches (sim_faults, read per call),
and the void of a key — a charge taken under it is given back whole and no later charge is taken with it."""

import asyncio
import os

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import create_async_engine

from billing.adapters.gateway_simulator import SimulatedGateway
from billing.domain.gateway import Declined, GatewayUnavailable
from tests.support.processes import recreate_databases

pytestmark = pytest.mark.integration
DATABASE = f"{os.environ.get('TEST_DB_PREFIX', 't_')}gateway_it"


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(infra):
    await recreate_databases(infra.postgres_url, [DATABASE])
    engine = create_async_engine(infra.database_url(DATABASE))
    simulator = SimulatedGateway(engine, pool_size=2)
    await simulator.create_tables()
    simulator.sql = await asyncpg.connect(infra.database_url(DATABASE).replace("+asyncpg", ""))
    yield simulator
    await simulator.sql.close()
    if simulator._pool is not None:  # noqa: SLF001 - the test's own instance
        await simulator._pool.close()  # noqa: SLF001
    await engine.dispose()


async def fault(gateway, token: str, operation: str, mode: str) -> None:
    await gateway.sql.execute("INSERT INTO sim_faults VALUES ($1, $2, $3, now() + interval '1 hour')",
                              token, operation, mode)


async def test_an_outage_on_a_token_answers_nothing_for_it_and_leaves_other_tokens_alone(gateway):
    await fault(gateway, "tok_down", "charge", "unavailable")
    with pytest.raises(GatewayUnavailable):
        await gateway.charge("k-down", "tok_down", 500, "USD")
    assert (await gateway.charge("k-up", "tok_visa", 500, "USD")).amount == 500
    assert await gateway.sql.fetchval("SELECT count(*) FROM sim_charges WHERE idempotency_key = 'k-down'") == 0
    await gateway.sql.execute("DELETE FROM sim_faults WHERE token = 'tok_down'")
    assert (await gateway.charge("k-down", "tok_down", 500, "USD")).amount == 500


async def test_a_refusal_of_refunds_refuses_them_until_it_is_lifted(gateway):
    charged = await gateway.charge("k-refund", "tok_refuse", 700, "USD")
    await fault(gateway, "tok_refuse", "refund", "refuse")
    with pytest.raises(Declined):
        await gateway.refund("r-1", charged.reference, 700)
    await gateway.sql.execute("DELETE FROM sim_faults WHERE token = 'tok_refuse'")
    assert await gateway.refund("r-1", charged.reference, 700) == "re_r-1"


async def test_a_void_gives_back_a_charge_whose_answer_was_lost_and_refuses_the_key_from_then_on(gateway):
    with pytest.raises(GatewayUnavailable):  # the money is taken, the answer lost
        await gateway.charge("k-lost", "tok_timeoutAfterCharge", 900, "EUR")
    reference = await gateway.void("k-lost")
    assert reference.startswith("ch_")
    row = await gateway.sql.fetchrow("SELECT amount, refunded FROM sim_charges WHERE idempotency_key = 'k-lost'")
    assert row["amount"] == row["refunded"] == 900
    with pytest.raises(Declined):
        await gateway.charge("k-lost", "tok_timeoutAfterCharge", 900, "EUR")
    assert await gateway.void("k-lost") == reference  # voiding again changes nothing


async def test_a_void_of_a_key_never_charged_keeps_it_from_ever_charging(gateway):
    assert await gateway.void("k-never") == ""
    with pytest.raises(Declined):
        await gateway.charge("k-never", "tok_visa", 100, "USD")
    assert await gateway.sql.fetchval("SELECT count(*) FROM sim_charges WHERE idempotency_key = 'k-never'") == 0


async def test_a_charge_whose_answer_never_comes_is_taken_once_and_only_a_void_gives_it_back(gateway):
    for _ in range(3):  # every call times out; the money is taken once, under the key
        with pytest.raises(GatewayUnavailable):
            await gateway.charge("k-silent", "tok_chargeAnswerLost", 600, "USD")
    row = await gateway.sql.fetchrow("SELECT amount, refunded FROM sim_charges WHERE idempotency_key = 'k-silent'")
    assert (row["amount"], row["refunded"]) == (600, 0)
    await fault(gateway, "tok_chargeAnswerLost", "void", "unavailable")  # voids alone down: no answer, nothing done
    with pytest.raises(GatewayUnavailable):
        await gateway.void("k-silent")
    assert await gateway.sql.fetchval("SELECT refunded FROM sim_charges WHERE idempotency_key = 'k-silent'") == 0
    await gateway.sql.execute("DELETE FROM sim_faults WHERE token = 'tok_chargeAnswerLost'")
    assert (await gateway.void("k-silent")).startswith("ch_")
    assert await gateway.sql.fetchval("SELECT refunded FROM sim_charges WHERE idempotency_key = 'k-silent'") == 600


async def test_its_migration_runs_again_on_an_existing_database_and_keeps_what_it_holds(gateway):
    charged = await gateway.charge("k-again", "tok_visa", 300, "USD")
    await gateway.create_tables()  # tables there already, functions replaced
    assert await gateway.charge("k-again", "tok_visa", 300, "USD") == charged  # the same key: the same charge


async def test_an_ordinary_charge_is_one_statement_answered_the_same_on_every_retry(gateway):
    await gateway.sql.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    loaded = await gateway.sql.fetchval(
        "SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'")
    await gateway.charge("k-warm", "tok_visa", 1, "USD")  # the pool's connection opened
    if loaded:
        await gateway.sql.execute("SELECT pg_stat_statements_reset()")
    first = await gateway.charge("k-once", "tok_visa", 1200, "EUR")
    assert await gateway.charge("k-once", "tok_visa", 1200, "EUR") == first
    if loaded:  # two calls, two statements: no reset query on release, no separate checks
        calls = await gateway.sql.fetchval(
            "SELECT sum(s.calls) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = current_database() AND s.query NOT LIKE '%pg_stat_statements%'")
        assert calls == 2
    assert first.reference.startswith("ch_") and (first.amount, first.currency) == (1200, "EUR")
    assert await gateway.sql.fetchval("SELECT count(*) FROM sim_charges WHERE idempotency_key = 'k-once'") == 1


async def test_a_void_and_a_charge_of_one_key_at_once_never_leave_money_taken(gateway):
    for n in range(20):
        key = f"k-race-{n}"
        outcomes = await asyncio.gather(gateway.charge(key, "tok_visa", 500, "USD"), gateway.void(key),
                                        return_exceptions=True)
        row = await gateway.sql.fetchrow("SELECT amount, refunded FROM sim_charges WHERE idempotency_key = $1", key)
        if isinstance(outcomes[0], Declined):  # the void came first: nothing was ever charged
            assert row is None and outcomes[1] == ""
        else:  # the charge came first: the void gave it back whole
            assert outcomes[1] == outcomes[0].reference and row["refunded"] == row["amount"] == 500


async def test_refunds_of_one_charge_at_once_never_give_back_more_than_it_took(gateway):
    charged = await gateway.charge("k-refunds", "tok_visa", 1000, "USD")
    outcomes = await asyncio.gather(*(gateway.refund(f"r-many-{n}", charged.reference, 300) for n in range(5)),
                                    return_exceptions=True)
    assert sum(isinstance(o, str) for o in outcomes) == 3
    assert {o.reason_code for o in outcomes if isinstance(o, Declined)} == {"refund_exceeds_charge"}
    assert await gateway.sql.fetchval("SELECT refunded FROM sim_charges WHERE reference = $1", charged.reference) == 900
    assert await gateway.refund("r-many-0", charged.reference, 300) == "re_r-many-0"  # again: no second refund
    with pytest.raises(Declined):
        await gateway.refund("r-unknown", "ch_nothing", 1)
