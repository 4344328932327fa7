"""The gateway outside the consumer transaction, end to end on real Kafka and PostgreSQL: a gateway down for
longer than the bound ends a charge as `gateway_unavailable` while other clients' charges go on; a refund the
gateway refuses waits for an operator (`needs_attention`, listed), whose RetryRefund completes it.

The test platform's billing gives up on a charge after GATEWAY_CHARGE_WITHIN (tests/conftest.py). Outages and
refusals are rows of the gateway simulator's `sim_faults`, scoped to one card token, so other tests' cards
are not touched. After each test: a clean ledger, escrow == funded milestones, and for every contract touched
what the client paid == held + released + refunded.
"""

import asyncio
import time

import pytest
import pytest_asyncio
from platform_runtime.client import new_id
from platform_schemas.commands.billing import RetryRefund
from platform_schemas.commands.contracts import WithdrawOffer

from tests.support.checks import (
    charge_key, escrow_matches_contract, gateway_charges, gateway_fault, gateway_fault_over, ledger_is_clean,
    money_adds_up, query,
)
from tests.support.story import offer, parties, send_offer

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def books_balance(client, platform):
    start = len(client.events)
    yield
    touched = {e.subject for e in client.events[start:] if e.source == "contracts" and "contract_id" in e.data}
    for contract_id in touched:
        await escrow_matches_contract(client, contract_id)
        await money_adds_up(platform, client, contract_id)
    await ledger_is_clean(client)


async def open_work(client, **params) -> list[dict]:
    query_string = "&".join(f"{k}={v}" for k, v in params.items())
    return (await client.get_json("billing", f"/gateway-work?{query_string}"))["items"]


async def listed(client, work_id: str, timeout: float = 30, **params) -> dict:
    """The open gateway work row of that id, once it is listed (polls with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [w for w in await open_work(client, **params) if w["work_id"] == work_id]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"{work_id} never listed with {params}"
        await asyncio.sleep(0.1)


async def test_a_gateway_down_past_the_bound_fails_the_charge_as_gateway_unavailable_while_other_charges_go_on(
        client, platform):
    token = new_id("tok_visa_outage")
    await gateway_fault(platform, token, "charge", "unavailable")
    try:
        unlucky, others = await parties(client, token=token), await parties(client)
        data = offer(unlucky)
        command = await client.send(data, subject=data.contract_id, actor=unlucky.client_id)

        pending = await listed(client, charge_key(command), status="pending")  # recorded at once, then retried
        assert (pending["operation"], pending["amount"], pending["contract_id"]) == ("charge", 50_000,
                                                                                      data.contract_id)
        other_command, other = await send_offer(client, others)  # the same partitions, the same gateway loop
        assert other.type == "OfferSent", other.data

        outcome = await client.outcome(command, {"OfferSent", "OfferFundingFailed"}, timeout=60)
        assert (outcome.type, outcome.data["reason_code"]) == ("OfferFundingFailed", "gateway_unavailable")
        assert client.events.index(other) < client.events.index(outcome)  # others went on meanwhile
        failed = await client.wait_for(lambda e: e.type == "ChargeFailed" and e.correlationid == command.id)
        assert (failed.data["retryable"], failed.data["step_id"]) == (True, charge_key(command))
        assert failed.data["consecutive_failures"] == 0  # an outage is not the client's failure
    finally:
        await gateway_fault_over(platform, token, "charge")

    # A lost answer may have charged: the key is voided once the gateway answers voids (listed until then).
    deadline = time.monotonic() + 30
    while charge_key(command) in [w["work_id"] for w in await open_work(client)]:
        assert time.monotonic() < deadline, "the given-up charge was never voided"
        await asyncio.sleep(0.2)
    assert await gateway_charges(platform, command) == []  # nothing was taken
    assert await query(platform, "gateway", "SELECT 1 FROM sim_voids WHERE idempotency_key = $1", charge_key(command))
    [charge] = await query(platform, "billing", "SELECT status, attempts, reason_code, void_status FROM charges "
                                                "WHERE charge_id = $1", charge_key(command))
    assert (charge["status"], charge["reason_code"], charge["void_status"]) == (
        "failed", "gateway_unavailable", "done") and charge["attempts"] > 1
    contract = await client.get_json("contracts", f"/contracts/{data.contract_id}")
    assert contract["status"] == "funding_failed"
    status = await client.get_json("contracts", f"/commands/{command.id}")
    assert (status["status"], status["outcome"]["reason_code"]) == ("completed", "gateway_unavailable")
    assert len(await gateway_charges(platform, other_command)) == 1


async def test_a_refund_the_gateway_refuses_needs_attention_is_listed_and_an_operators_retry_completes_it(
        client, platform):
    token = new_id("tok_visa_refusal")
    people = await parties(client, token=token)
    command, sent = await send_offer(client, people)
    assert sent.type == "OfferSent", sent.data
    contract_id = command.data["contract_id"]
    await gateway_fault(platform, token, "refund", "refuse")
    try:
        withdraw = await client.send(WithdrawOffer(contract_id=contract_id), subject=contract_id,
                                     actor=people.client_id)
        refused = await client.wait_for(lambda e: e.type == "RefundChargeFailed" and e.subject == contract_id)
        assert (refused.data["reason_code"], refused.data["retryable"]) == ("refund_declined", True)
        refund_id = refused.data["refund_id"]
        attention = await listed(client, refund_id, status="needs_attention")
        assert (attention["operation"], attention["amount"], attention["reason_code"]) == (
            "refund", 50_000, "refund_declined")
        assert refund_id in [w["work_id"] for w in await open_work(client, status="needs_attention", older_than="PT0S")]
        assert refund_id not in [w["work_id"] for w in await open_work(client, status="needs_attention",
                                                                        older_than="PT1H")]
        assert client.of_type("OfferWithdrawn", contract_id=contract_id) == []  # not final: money still owed

        not_admin = await client.send(RetryRefund(refund_id=refund_id), subject=contract_id, actor=people.client_id)
        assert (await client.outcome(not_admin, {"RefundRetried"})).data["reason_code"] == "forbidden"
    finally:
        await gateway_fault_over(platform, token, "refund")

    retry = await client.send(RetryRefund(refund_id=refund_id), subject=contract_id, actor="admin:ops")
    assert (await client.outcome(retry, {"RefundRetried"})).type == "RefundRetried"
    refunded = await client.wait_for(lambda e: e.type == "ChargeRefunded" and e.data["refund_id"] == refund_id)
    assert refunded.correlationid == withdraw.id  # the saga's reply, under the saga's correlation
    withdrawn = await client.outcome(withdraw, {"OfferWithdrawn"}, timeout=60)
    assert (withdrawn.type, withdrawn.data["refunded_amount"]) == ("OfferWithdrawn", 50_000)
    [charge] = await gateway_charges(platform, command)
    assert charge["amount"] == charge["refunded"] == 50_000
    assert refund_id not in [w["work_id"] for w in await open_work(client)]
    again = await client.send(RetryRefund(refund_id=refund_id), subject=contract_id, actor="admin:ops")
    assert (await client.outcome(again, {"RefundRetried"})).data["reason_code"] == "invalid_state"
    history = await client.get_json("billing", f"/accounts/{people.client_id}/transactions")
    assert sorted((t["kind"], t["amount"]) for t in history["items"]) == [
        ("fixed_price_charge", -50_000), ("refund", 50_000)]


async def test_stuck_work_and_batches_are_listed_page_by_page(client):
    first = await client.get_json("billing", "/gateway-work?limit=1")
    assert len(first["items"]) <= 1
    assert (await client.get("billing", "/gateway-work?status=done")).status_code == 400
    assert (await client.get("billing", "/gateway-work?older_than=five")).status_code == 400
    assert (await client.get("billing", "/gateway-work?next=garbage")).status_code == 400
    batches = await client.get_json("billing", "/bonus-batches?status=charging&older_than=PT5M")
    assert all(b["status"] == "charging" for b in batches["items"])
    assert (await client.get("billing", "/bonus-batches?status=stuck")).status_code == 422
