"""Every saga finishes, end to end on real Kafka and PostgreSQL (SAGA_STEP_TIMEOUT is 15 s, then 30 s, and SAGA_STEP_ATTEMPTS
2 in these tests).

An escrow that does not answer (its process stopped) makes the fund saga send the hold again with the
same step id, then wait as `needs_attention` (listed by GET /sagas, with a log line); once escrow is back
it holds the money once and the saga completes: one charge at the gateway, one hold in escrow. A hold
escrow refuses is answered with its typed failure and the charge is given back (test_fund_saga.py).
After each test the shared checks (tests/e2e/conftest.py) find every saga final and the books balanced.
"""

import asyncio
import signal
import time

import pytest

from contracts.domain.sagas import saga_id_for
from tests.support.checks import escrow_matches_contract, gateway_charges
from tests.support.story import offer, parties

pytestmark = pytest.mark.e2e


async def poll(what, condition, timeout: float = 90.0, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = await what()
        if condition(value):
            return value
        assert time.monotonic() < deadline, f"not within {timeout}s: {value}"
        await asyncio.sleep(every)


async def waiting_sagas(client, status: str, kind: str = "fund") -> dict[str, dict]:
    body = await client.get_json("contracts", f"/sagas?status={status}&kind={kind}&limit=1000")
    return {s["saga_id"]: s for s in body["items"]}


async def test_an_escrow_that_does_not_answer_makes_the_fund_saga_resend_escalate_and_finish_once_it_is_back(
        client, platform):
    people = await parties(client)
    data = offer(people)
    escrow = platform.procs["escrow#0"]
    platform.kill("escrow#0", signal.SIGTERM)
    try:
        command = await client.send(data, subject=data.contract_id, actor=people.client_id)
        saga_id = saga_id_for("fund", command.id)
        stuck = await poll(lambda: waiting_sagas(client, "needs_attention"), lambda found: saga_id in found)
        saga = stuck[saga_id]
        assert (saga["step"], saga["attempts"], saga["step_log"][-1]["outcome"]) == ("hold", 2, "no_answer")
        assert [e["outcome"] for e in saga["step_log"] if e["step"] == "hold"].count("resent") == 1
        listed = await client.get_json("contracts", f"/sagas?status=needs_attention&older_than=PT0S&kind=fund")
        assert saga_id in {s["saga_id"] for s in listed["items"]}
        status = await client.get_json("contracts", f"/commands/{command.id}")
        assert status["status"] == "accepted"  # not final yet, and nothing intermediate shown as final
    finally:
        platform.start("escrow", "0", escrow.port)
        await platform.wait_ready("escrow#0")
    outcome = await client.outcome(command, {"OfferSent", "OfferFundingFailed"})
    assert outcome.type == "OfferSent", outcome.data
    await poll(lambda: client.get_json("contracts", f"/commands/{command.id}"),
               lambda s: s["status"] == "completed" and s["outcome"]["type"] == "OfferSent")
    assert len(await gateway_charges(platform, command)) == 1  # the hold asked twice, one charge made
    held = await client.get_json("escrow", f"/escrow/{data.contract_id}")
    assert held["balance"] == 50_000  # held once, however often the hold was sent
    await escrow_matches_contract(client, data.contract_id)
    assert saga_id not in await waiting_sagas(client, "needs_attention")
    assert saga_id not in await waiting_sagas(client, "running")
