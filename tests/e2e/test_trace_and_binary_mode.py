"""For integrators, on the four services as processes: one command is one trace across every service
(W3C trace context in each envelope, OpenTelemetry spans written by each service to a file), and a
command published in CloudEvents binary content mode is handled like a structured one."""

import asyncio
import json
import os
import secrets
import time
import uuid
from pathlib import Path

import pytest
from platform_runtime.client import new_id
from platform_schemas import new_envelope
from platform_schemas.commands.contracts import RegisterAccount
from platform_schemas.topics import CONTRACTS_ADMIN_COMMANDS

from tests.support.processes import LOGS, ROOT
from tests.support.story import offer, parties

pytestmark = pytest.mark.e2e


def new_traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def spans_of(trace_id: str) -> list[dict]:
    spans = []
    for path in LOGS.glob("spans-*.jsonl"):
        for line in path.read_text().splitlines():
            if trace_id in line and line.endswith("}"):
                span = json.loads(line)
                if span["trace_id"] == trace_id:
                    spans.append(span)
    return spans


async def test_a_send_offer_and_everything_it_causes_across_the_four_services_is_one_trace(client):
    people = await parties(client)
    trace_id, traceparent = new_traceparent()
    data = offer(people)
    command = await client.send(data, subject=data.contract_id, actor=people.client_id, traceparent=traceparent)
    outcome = await client.outcome(command, {"OfferSent", "OfferFundingFailed"})
    assert outcome.type == "OfferSent"
    await client.wait_for(lambda e: e.type == "NotificationSent" and e.correlationid == command.id, 30,
                          "the offer's notification")
    await client.wait_for(lambda e: e.type == "TransactionRecorded" and e.correlationid == command.id, 30)

    saga = {e.id: e for e in client.events if e.correlationid == command.id}
    assert {e.source for e in saga.values()} == {"contracts", "billing", "escrow", "notifications"}
    assert {e.traceparent.split("-")[1] for e in saga.values()} == {trace_id}, \
        {e.type: e.traceparent for e in saga.values()}

    # Each service's spans: every message of the saga was handled inside a span of the same trace.
    expected = {("contracts", "handle SendOffer"), ("billing", "handle ChargeClient"),
                ("contracts", "handle ClientCharged"), ("escrow", "handle ClientCharged"),  # escrow holds on it
                ("contracts", "handle EscrowFunded"), ("notifications", "handle OfferSent")}
    # Each service exports its spans in batches of its own, so a span may be read before the span it hangs off
    # (another service's, still in that service's batch): the tree is read again until it is whole, or the deadline.
    deadline = time.monotonic() + 20
    while True:
        spans = spans_of(trace_id)
        by_id = {s["span_id"]: s for s in spans}
        # one tree: every span but the first hangs off the caller's span or another span of the saga
        roots = [s for s in spans if s["parent_id"] not in by_id]
        whole = {s["parent_id"] for s in roots} == {traceparent.split("-")[2]}
        if (expected <= {(s["service"], s["name"]) for s in spans} and whole) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    assert expected <= {(s["service"], s["name"]) for s in spans}, sorted({(s["service"], s["name"]) for s in spans})
    assert {s["parent_id"] for s in roots} == {traceparent.split("-")[2]}, roots
    assert [s["name"] for s in roots] == ["handle SendOffer"]


async def test_a_command_in_cloudevents_binary_content_mode_is_handled_like_a_structured_one(client):
    account_id = new_id("client")
    envelope = new_envelope(RegisterAccount(account_id=account_id, role="client", name="Binary Ann",
                                            email=f"{account_id}@example.test"),
                            subject=account_id, actor="admin:ops", source="ops-batch")
    attributes = envelope.model_dump(mode="json", exclude_none=True)
    headers = [(f"ce_{name}", str(value).encode()) for name, value in attributes.items()
               if name not in ("data", "datacontenttype")] + [("content-type", b"application/json")]
    await client.producer_for(CONTRACTS_ADMIN_COMMANDS).send_and_wait(
        CONTRACTS_ADMIN_COMMANDS, json.dumps(attributes["data"]).encode(), key=account_id.encode(), headers=headers)
    outcome = await client.outcome(envelope, {"AccountRegistered"})
    assert outcome.type == "AccountRegistered" and outcome.data["name"] == "Binary Ann"
    account = await client.get_json("contracts", f"/accounts/{account_id}")
    assert account["status"] == "active"

    # The same id again, structured this time: the inbox sees the same command (a duplicate, no new effect).
    await client.send_raw(CONTRACTS_ADMIN_COMMANDS, envelope.to_json(), key=account_id)
    rejected_bad = await send_binary_with_bad_data(client, account_id)
    assert rejected_bad.data["reason_code"] == "invalid_data"
    assert len(client.of_type("AccountRegistered", account_id=account_id)) == 1


async def send_binary_with_bad_data(client, account_id: str):
    """A binary-mode command whose data misses required fields gets CommandRejected, like a structured one."""
    envelope = new_envelope(RegisterAccount(account_id=account_id, role="client", name="x",
                                            email=f"{account_id}@example.test"),
                            subject=account_id, actor="admin:ops", source="ops-batch")
    headers = [(f"ce_{n}", str(v).encode()) for n, v in envelope.model_dump(mode="json", exclude_none=True).items()
               if n != "data"]
    await client.producer_for(CONTRACTS_ADMIN_COMMANDS).send_and_wait(
        CONTRACTS_ADMIN_COMMANDS, b'{"account_id": "only-this"}', key=account_id.encode(), headers=headers)
    return await client.outcome(envelope, set())


async def test_a_command_published_with_kafka_console_producer_as_in_the_readme_quickstart(client, platform):
    script = ROOT / "deploy" / "local" / "kafka-console-producer.sh"
    work = Path(os.environ.get("KAFKA_WORK") or Path(os.environ.get("ESCROW_WORK", "/var/tmp/escrow-platform")) / "kafka")
    if not list((work / "lib").glob("kafka-tools-*.jar")):
        pytest.skip(f"the broker's jars are not in {work}/lib (the broker is not the project's local one)")
    account_id, command_id = new_id("client"), str(uuid.uuid4())
    line = (f'{account_id}|{{"specversion": "1.0", "id": "{command_id}", "source": "console", '
            f'"type": "RegisterAccount", "time": "2026-12-01T10:00:00Z", "subject": "{account_id}", '
            f'"actor": "admin:ops", "data": {{"account_id": "{account_id}", "role": "client", '
            f'"name": "Console Ann", "email": "ann@example.com"}}}}\n')
    proc = await asyncio.create_subprocess_exec(
        str(script), "--topic", CONTRACTS_ADMIN_COMMANDS, "--property", "parse.key=true", "--property",
        "key.separator=|",
        # as admin: the console producer's principal is KAFKA_PRINCIPAL
        env={**os.environ, **platform.kafka_as("admin").service_env(), "KAFKA_PRINCIPAL": "admin"},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(proc.communicate(line.encode()), 180)
    assert proc.returncode == 0, output.decode()[-2000:]
    registered = await client.wait_for(lambda e: e.type == "AccountRegistered" and e.correlationid == command_id,
                                       60, "AccountRegistered")
    assert registered.data["name"] == "Console Ann"
