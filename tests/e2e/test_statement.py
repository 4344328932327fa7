"""A contract's statement end to end: a milestone released, a dispute split, a milestone refunded and a bonus
paid by the batch; `GET /contracts/{id}/statement` (JSON and CSV) is recomputed here from escrow's ledger
(its postings, read from escrow's database) and adds up to what the gateway charged the client."""

import asyncio
import csv
import io
import time
from datetime import datetime, timezone

import asyncpg
import pytest
from platform_schemas.commands.billing import RunBonusBatch
from platform_schemas.commands.contracts import (
    ApproveMilestone, CancelContract, GiveBonus, ResolveDispute, RespondToRefundRequest,
)

from escrow.domain import ledger
from platform_runtime.client import new_id
from platform_runtime.keys import compose
from tests.support.lifecycle import Platform, lifecycle, money_checked  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e
ADMIN = "admin:tests"
AMOUNTS = ("funded", "released", "refunded", "in_escrow", "pending", "available")


async def ledger_lines(platform, contract_id: str, milestones: list[str], bonuses: list[str]) -> dict[str, dict]:
    """Each item's amounts recomputed from escrow's postings of the contract (escrow's structured ledger keys)."""
    conn = await asyncpg.connect(platform.database_url("escrow").replace("+asyncpg", ""))
    try:
        rows = await conn.fetch(
            "SELECT t.kind, t.transaction_id, t.milestone_id, p.debit_kind, p.debit_owner_id, p.debit_sub_id, "
            "p.credit_kind, p.credit_owner_id, p.credit_sub_id, p.amount FROM postings p JOIN ledger_transactions t "
            "ON t.kind = p.transaction_kind AND t.transaction_id = p.transaction_id WHERE t.contract_id = $1",
            contract_id)
    finally:
        await conn.close()

    def total(**match) -> int:
        return sum(r["amount"] for r in rows if all(r[k] == v for k, v in match.items()))

    lines = {}
    for m in milestones:
        escrow = {"owner_id": contract_id, "sub_id": m, "kind": ledger.ESCROW}
        funded = total(**{f"credit_{k}": v for k, v in escrow.items()})
        released = total(kind=ledger.RELEASE, **{f"debit_{k}": v for k, v in escrow.items()})
        refunded = total(kind=ledger.REFUND, **{f"debit_{k}": v for k, v in escrow.items()})
        available = total(kind=ledger.AVAILABLE, milestone_id=m)
        lines[m] = {"funded": funded, "released": released, "refunded": refunded,
                    "in_escrow": funded - released - refunded, "pending": released - available,
                    "available": available}
    for b in bonuses:
        charged = total(kind=ledger.BONUS, transaction_id=b, debit_kind=ledger.GATEWAY)
        available = total(kind=ledger.AVAILABLE, transaction_id=compose(ledger.BONUS, b))
        lines[b] = {"funded": charged, "released": charged, "refunded": 0, "in_escrow": 0,
                    "pending": charged - available, "available": available}
    return lines


async def test_a_contracts_statement_is_what_the_ledger_says_and_adds_up_to_what_the_client_paid(
        lifecycle: Platform, platform):
    p = lifecycle
    deal = await p.active_deal(await p.parties(), (50_000, 30_000, 20_000), deposit="all_milestones")
    c, m1, m2, m3 = deal.contract_id, *deal.ids
    await p.submit(deal, m1)
    await p.do(ApproveMilestone(contract_id=c, milestone_id=m1), deal.client_id, "MilestonePaid")
    bonus = new_id("bonus")
    await p.do(GiveBonus(contract_id=c, bonus_id=bonus, amount=2_500, note="Great logo"), deal.client_id,
               "BonusGiven")
    await p.submit(deal, m2)
    cancel = await p.send(CancelContract(contract_id=c, reason="Budget cut"), deal.client_id)
    await p.caused(cancel, "MilestoneRefunded", milestone_id=m3)
    await p.caused(cancel, "RefundRequested", milestone_id=m2)
    await p.do(RespondToRefundRequest(contract_id=c, milestone_id=m2, accept=False), deal.freelancer_id,
               "DisputeOpened")
    await p.do(ResolveDispute(contract_id=c, milestone_id=m2, release_amount=10_000, refund_amount=20_000), ADMIN,
               "DisputeResolved")
    await p.event(c, "ContractCancelled")

    # The bonus: today's batch, run early by an operator (billing learns of the bonus from contracts first).
    deadline = time.monotonic() + 30
    while (await p.client.get("billing", f"/bonuses/{bonus}")).status_code != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    today = datetime.now(timezone.utc).date()
    await p.do(RunBonusBatch(business_date=today), ADMIN, "BonusBatchCompleted", subject=f"bonus-batch-{today}")
    await p.event(c, "BonusPosted", bonus_id=bonus)

    expected_totals = {"paid_by_client": 102_500, "funded": 102_500, "released": 62_500, "refunded": 40_000,
                       "in_escrow": 0}
    deadline = time.monotonic() + 60
    while True:  # contracts records escrow's events as they come; the last ones are the earnings made available
        body = await p.client.get_json("contracts", f"/contracts/{c}/statement")
        recomputed = await ledger_lines(platform, c, [m1, m2, m3], [bonus])
        shown = {i["id"]: {a: i[a] for a in AMOUNTS} for i in body["items"]}
        if shown == recomputed and body["totals"]["pending"] == 0:
            break
        assert time.monotonic() < deadline, f"statement {shown} != ledger {recomputed}"
        await asyncio.sleep(0.3)
    totals = body["totals"]
    assert {k: totals[k] for k in expected_totals} == expected_totals
    assert totals["available"] == totals["released"]
    items = {i["id"]: i for i in body["items"]}
    assert [i["item"] for i in body["items"]] == ["milestone"] * 3 + ["bonus"]
    assert items[m2]["released_at"] and items[m2]["refunded_at"] and items[m2]["available_at"]
    assert items[m3]["refunded_at"] and not items[m3]["released_at"]
    assert items[bonus]["title"] == "Great logo" and items[bonus]["available_at"] > items[bonus]["released_at"]
    charged = await p.client.get_json("billing", f"/accounts/{deal.client_id}/transactions?kind=fixed_price_charge")
    bonus_charged = await p.client.get_json("billing", f"/accounts/{deal.client_id}/transactions?kind=bonus_charge")
    assert -sum(t["amount"] for t in charged["items"] + bonus_charged["items"]) == totals["paid_by_client"]

    response = await p.client.get("contracts", f"/contracts/{c}/statement", headers={"Accept": "text/csv"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["item"], r["id"]) for r in rows] == [(i["item"], i["id"]) for i in body["items"]] + [("total", c)]
    assert {a: int(rows[-1][a]) for a in AMOUNTS} == {a: totals[a] for a in AMOUNTS}
    assert int(rows[1]["refunded"]) == 20_000 and rows[1]["title"] == items[m2]["title"]
    assert (await p.client.get("contracts", "/contracts/no-such-contract/statement")).status_code == 404
