"""The fund saga end to end: the services as separate processes on real Kafka and PostgreSQL.

Charge the client's primary billing method, hold the money in escrow, only then send the offer;
every failure says why, changes nothing, and a failure after the charge gives the money back.
After every test the ledger check is clean and each touched contract's escrow equals its funded
milestones. Independent cases run concurrently, each on its own contract.
"""

import asyncio
import signal
import time

import pytest
import pytest_asyncio
from platform_runtime.client import new_id
from platform_schemas.topics import CONTRACTS_COMMANDS

from tests.support.checks import (
    barrier, dead_letter, escrow_matches_contract, gateway_charges, ledger_is_clean, query, raw_command,
    send_raw_command,
)
from tests.support.story import offer, parties, send_offer

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def books_balance(client):
    """After the test: a clean ledger, and escrow == funded milestones for every contract it touched."""
    start = len(client.events)
    yield
    touched = {e.subject for e in client.events[start:] if e.source == "contracts" and "contract_id" in e.data}
    await asyncio.gather(*(escrow_matches_contract(client, contract_id) for contract_id in touched))
    await ledger_is_clean(client)


async def command_status(client, command) -> dict:
    return await client.get_json("contracts", f"/commands/{command.id}")


def caused_by(client, command, source: str = "contracts") -> list[str]:
    """Types of the events a command caused in one service, each event once."""
    unique = {e.id: e.type for e in client.events if e.correlationid == command.id and e.source == source}
    return sorted(unique.values())


# -- the happy paths ------------------------------------------------------------------------


async def test_an_offer_is_sent_once_its_first_milestone_is_charged_and_held_in_escrow(client, platform):
    people = await parties(client)
    command, outcome = await send_offer(client, people)
    contract_id, first = command.data["contract_id"], command.data["milestones"][0]
    assert outcome.type == "OfferSent"
    assert outcome.data["deposited_amount"] == first["amount"] == 50_000
    funded = await client.wait_for(lambda e: e.type == "MilestoneFunded" and e.correlationid == command.id)
    assert funded.data["milestone_id"] == first["milestone_id"]

    contract = await client.get_json("contracts", f"/contracts/{contract_id}")
    assert contract["status"] == "offered"
    assert [m["status"] for m in contract["milestones"]] == ["funded", "unfunded", "unfunded"]
    escrow = await client.get_json("escrow", f"/escrow/{contract_id}")
    assert (escrow["balance"], escrow["currency"]) == (50_000, "USD")
    assert escrow["milestones"] == [{"milestone_id": first["milestone_id"], "held": 50_000}]
    history = await client.get_json("billing", f"/accounts/{people.client_id}/transactions")
    assert [(t["kind"], t["amount"], t["contract_id"]) for t in history["items"]] == [
        ("fixed_price_charge", -50_000, contract_id)]
    [charge] = await gateway_charges(platform, command)
    assert (charge["amount"], charge["currency"], charge["refunded"]) == (50_000, "USD", 0)
    status = await command_status(client, command)
    assert (status["type"], status["status"], status["outcome"]["type"]) == ("SendOffer", "completed", "OfferSent")


async def test_every_step_of_the_saga_carries_the_offers_correlation_id(client):
    people = await parties(client)
    command, _ = await send_offer(client, people)
    await client.wait_for(lambda e: e.type == "TransactionRecorded" and e.correlationid == command.id)
    steps = {(e.source, e.type) for e in client.events if e.correlationid == command.id}
    assert {("billing", "ClientCharged"), ("billing", "TransactionRecorded"), ("escrow", "EscrowFunded"),
            ("contracts", "MilestoneFunded"), ("contracts", "OfferSent")} <= steps


async def test_an_all_milestones_deposit_holds_the_whole_contract_in_escrow(client, platform):
    people = await parties(client)
    command, outcome = await send_offer(client, people, deposit="all_milestones")
    contract_id = command.data["contract_id"]
    assert (outcome.type, outcome.data["deposited_amount"]) == ("OfferSent", 150_000)
    contract = await client.get_json("contracts", f"/contracts/{contract_id}")
    assert [m["status"] for m in contract["milestones"]] == ["funded"] * 3
    assert (await client.get_json("escrow", f"/escrow/{contract_id}"))["balance"] == 150_000
    assert [c["amount"] for c in await gateway_charges(platform, command)] == [150_000]
    assert caused_by(client, command).count("MilestoneFunded") == 3


# -- charges that fail ----------------------------------------------------------------------


async def a_failed_charge(client, platform, token: str | None, reason_code: str) -> None:
    people = await parties(client, token=token)
    command, outcome = await send_offer(client, people)
    contract_id = command.data["contract_id"]
    assert (outcome.type, outcome.data["reason_code"]) == ("OfferFundingFailed", reason_code), outcome.data
    assert outcome.data["message"] and outcome.data["amount"] == 50_000
    contract = await client.get_json("contracts", f"/contracts/{contract_id}")
    assert contract["status"] == "funding_failed"
    assert {m["status"] for m in contract["milestones"]} == {"unfunded"}
    assert client.of_type("OfferSent", contract_id=contract_id) == []
    assert (await client.get("escrow", f"/escrow/{contract_id}")).status_code == 404
    assert await gateway_charges(platform, command) == []
    status = await command_status(client, command)
    assert (status["status"], status["outcome"]["type"], status["outcome"]["reason_code"]) == (
        "completed", "OfferFundingFailed", reason_code)


async def test_a_charge_that_fails_sends_no_offer_holds_nothing_and_says_why(client, platform):
    await asyncio.gather(
        a_failed_charge(client, platform, "tok_chargeDeclined", "card_declined"),
        a_failed_charge(client, platform, "tok_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        a_failed_charge(client, platform, None, "no_primary_method"),
    )


async def a_charge_retried_at_the_gateway(client, platform, token: str, attempts_counted: int) -> None:
    people = await parties(client, token=token)
    command, outcome = await send_offer(client, people)
    assert outcome.type == "OfferSent", outcome.data
    charges = await gateway_charges(platform, command)
    assert len(charges) == 1 and charges[0]["amount"] == 50_000  # the retry made no second charge
    [counted] = await query(platform, "gateway", "SELECT attempts FROM sim_attempts WHERE idempotency_key = $1",
                            charges[0]["idempotency_key"])
    assert counted["attempts"] == attempts_counted
    history = await client.get_json("billing", f"/accounts/{people.client_id}/transactions")
    assert [(t["kind"], t["amount"]) for t in history["items"]] == [("fixed_price_charge", -50_000)]


async def test_a_gateway_that_fails_transiently_or_times_out_after_charging_is_retried_without_charging_twice(
        client, platform):
    await asyncio.gather(
        # failed at once, then charged on the retry: two attempts
        a_charge_retried_at_the_gateway(client, platform, "tok_processingError", attempts_counted=2),
        # charged on the first attempt, whose answer was lost: the retry finds the charge by its key
        a_charge_retried_at_the_gateway(client, platform, "tok_timeoutAfterCharge", attempts_counted=1),
    )


async def test_a_charge_escrow_refuses_to_hold_is_refunded_and_the_offer_fails(client, platform):
    people = await parties(client)
    data = offer(people)
    # Escrow already knows this contract in another currency, so it refuses the hold after the charge.
    await query(platform, "escrow", "INSERT INTO escrow_contracts (contract_id, client_id, currency) "
                                    "VALUES ($1, $2, 'EUR')", data.contract_id, people.client_id)
    command = await client.send(data, subject=data.contract_id, actor=people.client_id)
    outcome = await client.outcome(command, {"OfferSent", "OfferFundingFailed"})
    assert (outcome.type, outcome.data["reason_code"]) == ("OfferFundingFailed", "currency_mismatch")
    assert "refunded" in outcome.data["message"]

    refunded = await client.wait_for(lambda e: e.type == "ChargeRefunded" and e.correlationid == command.id)
    assert refunded.data["amount"] == 50_000
    assert client.of_type("EscrowHoldRejected", contract_id=data.contract_id)
    [charge] = await gateway_charges(platform, command)
    assert charge["amount"] == charge["refunded"] == 50_000
    history = await client.get_json("billing", f"/accounts/{people.client_id}/transactions")
    assert sorted((t["kind"], t["amount"]) for t in history["items"]) == [
        ("fixed_price_charge", -50_000), ("refund", 50_000)]
    assert (await client.get_json("contracts", f"/contracts/{data.contract_id}"))["status"] == "funding_failed"
    assert (await client.get_json("escrow", f"/escrow/{data.contract_id}"))["balance"] == 0


# -- the same command twice -----------------------------------------------------------------


async def test_an_offer_sent_twice_with_the_same_id_has_its_effect_once(client, platform):
    people = await parties(client)
    command, outcome = await send_offer(client, people)
    assert outcome.type == "OfferSent"
    before = caused_by(client, command)

    await client.send_raw(CONTRACTS_COMMANDS, command.to_json(), key=command.subject)
    await barrier(client, command.subject)  # contracts has handled the copy by now

    assert caused_by(client, command) == before == ["MilestoneFunded", "OfferSent"]
    assert len(await gateway_charges(platform, command)) == 1
    assert (await command_status(client, command))["status"] == "completed"


async def test_the_same_command_id_with_another_body_is_rejected_as_an_idempotency_conflict(client):
    people = await parties(client)
    command, _ = await send_offer(client, people)
    altered = offer(people)
    copy = await client.send(altered.model_copy(update={"contract_id": command.data["contract_id"]}),
                             subject=command.subject, actor=people.client_id, id=command.id)
    rejected = await client.wait_for(lambda e: e.type == "CommandRejected" and e.data["command_id"] == copy.id)
    assert rejected.data["reason_code"] == "idempotency_conflict"
    contract = await client.get_json("contracts", f"/contracts/{command.data['contract_id']}")
    assert [m["milestone_id"] for m in contract["milestones"]] == [m["milestone_id"]
                                                                  for m in command.data["milestones"]]
    assert (await command_status(client, command))["outcome"]["type"] == "OfferSent"


# -- what cannot be parsed or carried out ---------------------------------------------------


async def test_a_malformed_message_is_dead_lettered_and_the_command_behind_it_on_the_same_key_goes_through(
        client, infra):
    people = await parties(client)
    data = offer(people)
    garbage = f'{{"specversion": "1.0", "id": "{new_id("garbage")}", '.encode()
    await client.send_raw(CONTRACTS_COMMANDS, garbage, key=data.contract_id)
    command = await client.send(data, subject=data.contract_id, actor=people.client_id)
    assert (await client.outcome(command, {"OfferSent", "OfferFundingFailed"})).type == "OfferSent"

    dead = await dead_letter(infra.credentials("admin"), CONTRACTS_COMMANDS, garbage)
    headers = {k: v.decode() for k, v in dead.headers}
    assert dead.key == data.contract_id.encode()
    assert headers["dlq.original.topic"] == CONTRACTS_COMMANDS and headers["dlq.attempts"] == "1"
    assert headers["dlq.error"].startswith("unparseable envelope")
    assert int(headers["dlq.original.partition"]) >= 0 and int(headers["dlq.original.offset"]) >= 0


REJECTIONS = [
    # (what is wrong with the SendOffer, how it differs from a valid one, the reason code)
    ("an unknown command type", {"type": "LaunchRocket"}, "unknown_command"),
    ("data missing a field", {"without": "title"}, "invalid_data"),
    ("an actor who is not the client", {"actor": "the freelancer"}, "forbidden"),
    ("an amount below the minimum", {"amount": 499}, "amount_out_of_range"),
    ("an amount above the maximum", {"amount": 100_000_001}, "amount_out_of_range"),
    ("a negative amount", {"amount": -50_000}, "amount_out_of_range"),
    ("an amount as a string", {"amount": "50000"}, "invalid_data"),
    ("an amount as a float", {"amount": 50000.0}, "invalid_data"),
    ("an amount as a boolean", {"amount": True}, "invalid_data"),
    ("a currency the platform does not hold", {"currency": "JPY"}, "invalid_data"),
    ("a currency in lower case", {"currency": "usd"}, "invalid_data"),
]


def broken_offer(people, change: dict):
    """A SendOffer envelope with one thing changed; returns it with the contract id it names."""
    valid = offer(people)
    data = valid.model_dump(mode="json", exclude_none=True)
    if "amount" in change:
        data["milestones"][0]["amount"] = change["amount"]
    if "currency" in change:
        data["currency"] = change["currency"]
    data.pop(change.get("without"), None)
    actor = people.freelancer_id if change.get("actor") == "the freelancer" else people.client_id
    return raw_command(change.get("type", "SendOffer"), data, valid.contract_id, actor), valid.contract_id


async def a_rejected_offer(client, platform, people, change: dict, reason_code: str, what: str) -> None:
    envelope, contract_id = broken_offer(people, change)
    command = await send_raw_command(client, envelope)
    outcome = await client.outcome(command, {"OfferSent", "OfferFundingFailed"})
    assert (outcome.type, outcome.data.get("reason_code")) == ("CommandRejected", reason_code), (what, outcome.data)
    assert outcome.subject == contract_id and outcome.data["message"]
    assert (await client.get("contracts", f"/contracts/{contract_id}")).status_code == 404, what
    assert await gateway_charges(platform, command) == [], what
    status = await command_status(client, command)
    assert (status["status"], status["outcome"]["reason_code"]) == ("rejected", reason_code), what


async def test_commands_that_cannot_be_carried_out_are_rejected_with_a_reason_and_change_nothing(client, platform):
    people = await parties(client)
    await asyncio.gather(*(a_rejected_offer(client, platform, people, change, reason, what)
                           for what, change, reason in REJECTIONS))


# -- command status while the saga waits ----------------------------------------------------


async def test_an_offer_is_accepted_while_billing_is_frozen_and_completed_once_billing_resumes(client, platform):
    people = await parties(client)
    billing = platform.procs["billing#0"]
    billing.send_signal(signal.SIGSTOP)  # frozen well within its session timeout: no rebalance, just a stall
    try:
        data = offer(people)
        command = await client.send(data, subject=data.contract_id, actor=people.client_id)
        deadline = time.monotonic() + 5
        while (await client.get("contracts", f"/commands/{command.id}")).status_code == 404:
            assert time.monotonic() < deadline, "contracts never recorded the command"
            await asyncio.sleep(0.05)
        assert (await command_status(client, command))["status"] == "accepted"
        assert (await client.get_json("contracts", f"/contracts/{data.contract_id}"))["status"] == "funding"
    finally:
        billing.send_signal(signal.SIGCONT)
    assert (await client.outcome(command, {"OfferSent", "OfferFundingFailed"})).type == "OfferSent"
    assert (await command_status(client, command))["status"] == "completed"
