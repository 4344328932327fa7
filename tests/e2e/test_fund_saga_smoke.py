"""The fund saga end to end, four service processes on real Kafka and PostgreSQL."""

import pytest

from tests.support.story import parties, send_offer

pytestmark = pytest.mark.e2e


async def test_an_offer_is_sent_once_its_first_milestone_is_held_in_escrow(client):
    people = await parties(client)
    command, outcome = await send_offer(client, people)
    assert outcome.type == "OfferSent"
    contract_id = command.data["contract_id"]
    first = command.data["milestones"][0]
    contract = await client.get_json("contracts", f"/contracts/{contract_id}")
    assert contract["status"] == "offered"
    assert [m["status"] for m in contract["milestones"]] == ["funded", "unfunded", "unfunded"]
    escrow = await client.get_json("escrow", f"/escrow/{contract_id}")
    assert escrow["balance"] == first["amount"]
    history = await client.get_json("billing", f"/accounts/{people.client_id}/transactions")
    assert [(t["kind"], t["amount"]) for t in history["items"]] == [("fixed_price_charge", -first["amount"])]
    assert (await client.get_json("escrow", "/ledger/check"))["ok"]
