"""escrowctl, the operator CLI, as an operator runs it (a separate process) against the platform's processes:
send with schema validation, reads as tables and JSON, events, dead letters listed / shown / replayed, the
bonus batch and account suspension."""

import asyncio
import json
import os
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from platform_runtime.client import new_id
from platform_runtime.credentials import Credentials
from platform_schemas import new_envelope
from platform_schemas.commands.contracts import RegisterAccount
from platform_schemas.topics import CONTRACTS_ADMIN_COMMANDS, dlq

from tests.support.checks import barrier
from tests.support.processes import TEST_PORTS
from tests.support.story import offer, parties

pytestmark = pytest.mark.e2e


def ctl_env(platform) -> dict[str, str]:
    # an operator's escrowctl: the admin principal (reads the dead letters, writes the command topics)
    return {**platform.kafka_as("admin").service_env(), "COLUMNS": "200",
            **{f"{s.upper()}_URL": f"http://127.0.0.1:{port}" for s, port in TEST_PORTS.items()}}


async def escrowctl(platform, *args: str, stdin: bytes | None = None,
                    env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI in this process (typer's runner, in a thread: it runs its own event loop), as the
    installed entry point would; `test_the_installed_command` runs the real executable once."""
    from escrowctl import main
    from typer.testing import CliRunner

    def invoke():
        main.settings.cache_clear()
        result = CliRunner().invoke(main.app, list(args), input=stdin, env={**ctl_env(platform), **(env or {})})
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return await asyncio.to_thread(invoke)


async def test_the_installed_command_explains_bad_input_and_sends_nothing(platform, client):
    command_id = str(uuid.uuid4())
    executable = Path(sys.executable).parent / "escrowctl"  # what `make bootstrap` installs
    proc = await asyncio.create_subprocess_exec(
        str(executable), "send", "SendOffer", "--id", command_id, "--actor", "client-1",
        "--data", '{"contract_id": "c-1", "milestones": [], "currency": "JPY"}',
        env={**os.environ, **ctl_env(platform)}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2
    assert "SendOffer data does not match its schema" in err.decode() and "currency" in err.decode()
    response = await client.get("contracts", f"/commands/{command_id}")
    assert response.status_code == 404


async def ok_json(platform, *args: str):
    code, out, err = await escrowctl(platform, *args, "--json")
    assert code == 0, (args, out, err)
    return json.loads(out)


async def test_send_runs_a_whole_offer_and_the_reads_show_it_as_tables_and_json(client, platform):
    people = await parties(client)
    data = offer(people).model_dump(mode="json", exclude_none=True)
    code, out, err = await escrowctl(platform, "send", "SendOffer", "--data", "-", "--actor", people.client_id,
                                     "--json", stdin=json.dumps(data).encode())
    assert code == 0, err
    status = json.loads(out)
    assert (status["type"], status["status"], status["outcome"]["type"]) == ("SendOffer", "completed", "OfferSent")

    contract_id = data["contract_id"]
    assert await ok_json(platform, "contract", contract_id) == await client.get_json("contracts",
                                                                                     f"/contracts/{contract_id}")
    assert (await ok_json(platform, "escrow", contract_id))["balance"] == data["milestones"][0]["amount"]
    history = await ok_json(platform, "history", people.client_id)
    assert [(t["kind"], t["contract_id"]) for t in history["items"]] == [("fixed_price_charge", contract_id)]

    code, table, _ = await escrowctl(platform, "contract", contract_id)
    assert code == 0 and contract_id in table and data["milestones"][0]["milestone_id"] in table and "funded" in table
    code, table, _ = await escrowctl(platform, "history", people.client_id)
    assert code == 0 and "fixed_price_charge" in table

    # events: the offer's saga, from 10 minutes ago or from a time, filtered by contract, correlation and type
    since = (datetime.now(timezone.utc) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, out, err = await escrowctl(platform, "events", "--contract", contract_id, "--since", "PT10M",
                                     "--type", "OfferSent", "--type", "EscrowFunded", "--limit", "2",
                                     "--timeout", "60", "--json")
    assert code == 0, err
    assert sorted(json.loads(line)["type"] for line in out.splitlines()) == ["EscrowFunded", "OfferSent"]
    code, out, _ = await escrowctl(platform, "events", "--correlation", status["command_id"], "--since", since,
                                   "--topic", "billing.events", "--type", "ClientCharged", "--limit", "1",
                                   "--timeout", "60", "--json")
    assert [json.loads(line)["type"] for line in out.splitlines()] == ["ClientCharged"]


async def test_bad_input_is_explained_and_nothing_is_sent(platform):
    code, _, err = await escrowctl(platform, "send", "SendOffer", "--actor", "client-1",
                                   "--data", '{"contract_id": "c 1", "milestones": [], "currency": "JPY"}')
    assert code == 2
    assert "SendOffer data does not match its schema" in err and "client_id: Field required" in err
    assert "contract_id: String should match pattern" in err and "currency" in err
    code, _, err = await escrowctl(platform, "send", "PayMe", "--actor", "x", "--data", "{}")
    assert code == 2 and "'PayMe' is not a command of the platform" in err and "SendOffer" in err
    code, _, err = await escrowctl(platform, "send", "AcceptOffer", "--actor", "x", "--data", "{oops")
    assert code == 2 and "data is not JSON" in err
    code, _, err = await escrowctl(platform, "send", "AcceptOffer", "--actor", "x", "--data", "@/nonexistent.json")
    assert code == 2 and "cannot read /nonexistent.json" in err


async def test_reads_take_the_token_of_http_token_and_say_why_one_is_refused(platform):
    analytics = Credentials.local("analytics").http_token
    code, _, err = await escrowctl(platform, "history", "anyone", env={"HTTP_TOKEN": analytics})
    assert code == 1 and "analytics may not read /accounts/{account_id}/transactions" in err
    code, _, err = await escrowctl(platform, "contract", "c-1", env={"HTTP_TOKEN": "not-a-token"})
    assert code == 1 and "the bearer token is not valid" in err


async def test_a_rejected_command_exits_1_with_its_reason(platform):
    code, out, _ = await escrowctl(platform, "account", "reactivate", new_id("nobody"), "--json")
    assert code == 1 and json.loads(out)["outcome"]["reason_code"] == "not_found"


async def test_accounts_are_suspended_and_reactivated(client, platform):
    people = await parties(client, token=None)
    status = await ok_json(platform, "account", "suspend", people.client_id, "--reason", "chargebacks")
    assert status["status"] == "completed"
    assert (await client.get_json("contracts", f"/accounts/{people.client_id}"))["status"] == "suspended"
    await ok_json(platform, "account", "reactivate", people.client_id)
    assert (await client.get_json("contracts", f"/accounts/{people.client_id}"))["status"] == "active"


async def test_sagas_lists_those_needing_attention_and_the_stuck_ones_as_contracts_answers(client, platform):
    for args, query in ((("sagas",), "status=needs_attention&older_than=PT0S"),
                        (("sagas", "--stuck"), "status=running&older_than=PT5M"),
                        (("sagas", "--status", "running", "--older-than", "PT1H", "--kind", "fund"),
                         "status=running&older_than=PT1H&kind=fund")):
        listed = await ok_json(platform, *args)
        assert listed["items"] == (await client.get_json("contracts", f"/sagas?{query}"))["items"]
    code, table, _ = await escrowctl(platform, "sagas")
    assert code == 0 and "sagas needs_attention" in table
    code, _, err = await escrowctl(platform, "sagas", "--status", "finished")
    assert code == 1 and "422" in err


async def test_a_bonus_batch_is_run_and_its_status_read(platform):
    day = "2001-02-03"  # long past, nobody's bonuses: an empty batch
    status = await ok_json(platform, "bonus-batch", "run", day)
    assert (status["status"], status["outcome"]["type"]) == ("completed", "BonusBatchCompleted")
    batch = await ok_json(platform, "bonus-batch", "status", day)
    assert (batch["business_date"], batch["status"], batch["bonuses"]) == (day, "completed", 0)


# -- dead letters ----------------------------------------------------------------------------------


def dead_lettered() -> list[tuple[str, bytes]]:
    return [("dlq.error", b"RuntimeError('database was being migrated')"),
            ("dlq.original.topic", CONTRACTS_ADMIN_COMMANDS.encode()), ("dlq.original.partition", b"0"),
            ("dlq.original.offset", b"0"), ("dlq.attempts", b"5"), ("dlq.consumer.group", b"contracts")]


async def test_dead_letters_are_listed_shown_and_replayed_keeping_their_id_so_a_handled_one_is_dropped(
        client, platform):
    def register(account_id: str):
        return new_envelope(RegisterAccount(account_id=account_id, role="client", name="Dee",
                                            email=f"{account_id}@example.test"),
                            subject=account_id, actor="admin:tests", source="tests")

    # One command dead-lettered before it was ever handled, and one handled that was dead-lettered too
    # (say its consumer crashed after its commit, then failed on the redelivery).
    lost, handled = register(new_id("client")), register(new_id("client"))
    await client.send_raw(CONTRACTS_ADMIN_COMMANDS, handled.to_json(), key=handled.subject)
    assert (await client.outcome(handled, {"AccountRegistered"})).type == "AccountRegistered"
    # written as contracts (its consumer writes contracts.admin-commands' dead letters)
    producer = AIOKafkaProducer(**platform.kafka_as("contracts").kafka_options(), enable_idempotence=True)
    await producer.start()
    try:
        for envelope in (lost, handled):
            await producer.send_and_wait(dlq(CONTRACTS_ADMIN_COMMANDS), envelope.to_json(),
                                         key=envelope.subject.encode(), headers=dead_lettered())
    finally:
        await producer.stop()
    # and one the consumer dead-letters itself: not an envelope at all
    garbage = f"not an envelope {uuid.uuid4()}".encode()
    await client.send_raw(CONTRACTS_ADMIN_COMMANDS, garbage, key="garbage")

    async def listed() -> dict:
        letters = await ok_json(platform, "dlq", "list", "--topic", CONTRACTS_ADMIN_COMMANDS)
        return {(d["id"] or d["key"]): d for d in letters}

    deadline = asyncio.get_running_loop().time() + 60
    while "garbage" not in (letters := await listed()):
        assert asyncio.get_running_loop().time() < deadline, "the consumer did not dead-letter the garbage"
        await asyncio.sleep(0.5)
    assert "unparseable envelope" in letters["garbage"]["error"]
    assert {letters[e.id]["type"] for e in (lost, handled)} == {"RegisterAccount"}
    assert letters[lost.id]["original"] == f"{CONTRACTS_ADMIN_COMMANDS}:0:0" and letters[lost.id]["attempts"] == "5"

    shown = await ok_json(platform, "dlq", "show", letters[lost.id]["position"])
    assert shown["value"]["id"] == lost.id and shown["headers"]["dlq.consumer.group"] == "contracts"
    code, table, _ = await escrowctl(platform, "dlq", "show", letters[lost.id]["position"])
    assert code == 0 and "dlq.error" in table and "database was being migrated" in table

    replayed = await ok_json(platform, "dlq", "replay", letters[lost.id]["position"], letters[handled.id]["position"])
    assert [r["replayed_to"] for r in replayed] == [CONTRACTS_ADMIN_COMMANDS, CONTRACTS_ADMIN_COMMANDS]
    assert (await client.outcome(lost, {"AccountRegistered"})).type == "AccountRegistered"
    await barrier(client, handled.subject)  # contracts has consumed the replayed copy of the handled one
    for envelope in (lost, handled):
        assert len(client.of_type("AccountRegistered", account_id=envelope.subject)) == 1
    assert (await listed())[lost.id]["replayed"] is False  # the dead letter itself stays; its copy is marked
    code, _, err = await escrowctl(platform, "dlq", "show", f"{dlq(CONTRACTS_ADMIN_COMMANDS)}:0:99999999")
    assert code == 1 and "no dead letter" in err
