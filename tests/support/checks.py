"""What end-to-end tests check the platform against: the books, the gateway's own store, barriers."""

import asyncio
import time
import uuid
from datetime import datetime, timezone

import asyncpg
from platform_runtime.client import PlatformClient
from platform_runtime.credentials import Credentials
from platform_schemas import Envelope
from platform_schemas.topics import CONTRACTS_COMMANDS

from contracts.domain.sagas import saga_id_for

# Milestone statuses in which a milestone's money sits in escrow (contracts' domain says the same).
HOLDS_ESCROW = {"funded", "submitted", "changes_requested", "releasing", "refund_requested", "disputed",
                "refunding"}


def dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def query(platform, database: str, sql: str, *args) -> list[asyncpg.Record]:
    """Read a service's (or the gateway simulator's) own database directly."""
    conn = await asyncpg.connect(dsn(platform.database_url(database)))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def charge_key(offer_command: Envelope) -> str:
    """The gateway idempotency key of an offer's deposit charge: the fund saga's charge step id."""
    return f"{saga_id_for('fund', offer_command.id)}:charge"


async def gateway_charges(platform, offer_command: Envelope) -> list[asyncpg.Record]:
    """The simulator's own charge rows for an offer's deposit (its durable store, not billing's)."""
    return await query(platform, "gateway", "SELECT * FROM sim_charges WHERE idempotency_key = $1",
                       charge_key(offer_command))


async def ledger_is_clean(client: PlatformClient) -> None:
    check = await client.get_json("escrow", "/ledger/check")
    assert check["ok"], check["problems"]


async def escrow_matches_contract(client: PlatformClient, contract_id: str) -> None:
    """Escrow holds exactly the contract's funded milestones, milestone by milestone."""
    contract = await client.get("contracts", f"/contracts/{contract_id}")
    expected = {}
    if contract.status_code == 200:
        expected = {m["milestone_id"]: m["amount"] for m in contract.json()["milestones"]
                    if m["status"] in HOLDS_ESCROW}
    escrow = await client.get("escrow", f"/escrow/{contract_id}")
    held = {}
    if escrow.status_code == 200:
        held = {m["milestone_id"]: m["held"] for m in escrow.json()["milestones"] if m["held"]}
        assert escrow.json()["balance"] == sum(expected.values()), (contract_id, escrow.json())
    assert held == expected, (contract_id, held, expected)


def raw_command(type_name: str, data: dict, subject: str, actor: str, id: str | None = None) -> Envelope:
    """A command envelope built by hand, so its data can be anything a careless caller might send."""
    command_id = id or str(uuid.uuid4())
    return Envelope(id=command_id, source="tests", type=type_name, time=datetime.now(timezone.utc),
                    subject=subject, actor=actor, correlationid=command_id,
                    dataschema=f"urn:escrow:schema:{type_name}:1", data=data)


async def send_raw_command(client: PlatformClient, command: Envelope, topic: str = CONTRACTS_COMMANDS) -> Envelope:
    await client.send_raw(topic, command.to_json(), key=command.subject)
    return command


async def publish_as(platform, principal: str, topic: str, *envelopes: Envelope) -> None:
    """Publishes as the topic's owner would (its relay): only that principal may write an event topic."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**platform.kafka_as(principal).kafka_options(), enable_idempotence=True)
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send_and_wait(topic, envelope.to_json(), key=envelope.subject.encode())
    finally:
        await producer.stop()


async def barrier(client: PlatformClient, subject: str) -> None:
    """Returns once contracts has handled everything sent before on this key (same partition, in order)
    and its events are visible: a command of an unknown type is rejected after all of them."""
    marker = await send_raw_command(client, raw_command("Barrier", {}, subject, "system"))
    rejected = await client.outcome(marker, set())
    assert rejected.data["reason_code"] == "unknown_command"


async def dead_letter(kafka: Credentials, topic: str, value: bytes, timeout: float = 20.0):
    """The record of `topic`'s dead-letter topic whose value is `value` (polls with a deadline)."""
    from aiokafka import AIOKafkaConsumer
    from platform_schemas.topics import dlq

    consumer = AIOKafkaConsumer(dlq(topic), **kafka.kafka_options(), enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    if record.value == value:
                        return record
            await asyncio.sleep(0)
        raise TimeoutError(f"{value!r} not dead-lettered within {timeout}s")
    finally:
        await consumer.stop()


async def money_adds_up(platform, client: PlatformClient, contract_id: str) -> None:
    """What the client paid for the contract (the gateway's own charges, less what it refunded) is what escrow
    holds for it plus what was released to the freelancer."""
    charge_ids = [r["charge_id"] for r in await query(
        platform, "billing", "SELECT charge_id FROM charges WHERE contract_id = $1 AND status = 'succeeded'",
        contract_id)]
    at_gateway = await query(platform, "gateway", "SELECT amount, refunded FROM sim_charges "
                                                  "WHERE idempotency_key = ANY($1::text[])", charge_ids)
    paid, refunded = sum(c["amount"] for c in at_gateway), sum(c["refunded"] for c in at_gateway)
    escrow = await client.get("escrow", f"/escrow/{contract_id}")
    held = escrow.json()["balance"] if escrow.status_code == 200 else 0
    contract = await client.get("contracts", f"/contracts/{contract_id}")
    released = sum(m["released_amount"] for m in contract.json()["milestones"]) if contract.status_code == 200 else 0
    assert paid == held + released + refunded, (contract_id, paid, held, released, refunded)


async def gateway_fault(platform, token: str, operation: str, mode: str, seconds: float = 3600) -> None:
    """Switch the gateway simulator's outage (`unavailable`) or refusal (`refuse`) on for a card token."""
    await query(platform, "gateway",
                "INSERT INTO sim_faults (token, operation, mode, until) VALUES ($1, $2, $3, now() + $4 * interval '1 s') "
                "ON CONFLICT (token, operation) DO UPDATE SET mode = excluded.mode, until = excluded.until",
                token, operation, mode, seconds)


async def gateway_fault_over(platform, token: str, operation: str) -> None:
    await query(platform, "gateway", "DELETE FROM sim_faults WHERE token = $1 AND operation = $2", token, operation)


FINAL_SAGA_STATES = ("completed", "failed")


async def sagas_not_final(platform) -> list[asyncpg.Record]:
    return await query(platform, "contracts", "SELECT saga_id, kind, status, step FROM sagas "
                                              "WHERE status NOT IN ('completed', 'failed') ORDER BY saga_id")


async def every_saga_ends(platform, timeout: float = 300.0) -> None:
    """Every saga reaches a final state (polls with a deadline: the last answers may be in flight)."""
    deadline = time.monotonic() + timeout
    while waiting := await sagas_not_final(platform):
        assert time.monotonic() < deadline, f"sagas not final after {timeout}s: {[dict(r) for r in waiting]}"
        await asyncio.sleep(0.5)


async def platform_money_adds_up(platform, timeout: float = 60.0) -> None:
    """What clients paid for milestones (billing's charges) equals what escrow holds plus what it released
    plus what was refunded to the clients (billing's refunds: escrow's refunds and charges given back), per
    currency, over everything this platform ever did.

    The sums are read from two databases while the platform runs: a saga a timer starts meanwhile (a refund
    window's silence, an auto-release) may be between its steps, escrow's done and billing's not yet. So they are
    read again, once every saga is final, until they agree; a difference that stays to the deadline fails."""
    deadline = time.monotonic() + timeout
    while differences := await money_differences(platform):
        assert time.monotonic() < deadline, differences
        await asyncio.sleep(0.5)
        await every_saga_ends(platform)


async def money_differences(platform) -> list[tuple[str, dict[str, int]]]:
    """Per currency where billing's and escrow's sums disagree: (currency, the four sums)."""
    paid = {r["currency"]: r["total"] for r in await query(
        platform, "billing", "SELECT currency, sum(amount) AS total FROM charges "
                             "WHERE status = 'succeeded' AND purpose = 'fixed_price' GROUP BY currency")}
    refunded = {r["currency"]: r["total"] for r in await query(
        platform, "billing", "SELECT currency, sum(amount) AS total FROM refunds WHERE status = 'refunded' "
                             "GROUP BY currency")}
    escrow = {r["currency"]: (r["held"], r["released"]) for r in await query(
        platform, "escrow", "SELECT currency, sum(funded - released - refunded) AS held, sum(released) AS released "
                            "FROM holdings GROUP BY currency")}
    differences = []
    for currency in sorted(set(paid) | set(refunded) | set(escrow)):
        held, released = escrow.get(currency, (0, 0))
        if paid.get(currency, 0) != held + released + refunded.get(currency, 0):
            differences.append((currency, {"paid": paid.get(currency, 0), "held": held, "released": released,
                                           "refunded": refunded.get(currency, 0)}))
    return differences
