"""The gateway simulator against real PostgreSQL: its outage and refusal switches (sim_faults, read per call),
and the void of a key — a charge taken under it is given back whole and no later charge is taken with it."""

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
