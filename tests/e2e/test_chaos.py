"""Chaos (issue 9, item 6): sagas of every kind under load while every service is SIGKILLed at random
moments, PostgreSQL is restarted once and the Kafka broker once; then every saga must be final, nothing
charged twice, the ledger check clean, and what clients were charged = held + released + refunded.

Opt-in (it restarts the servers): `CHAOS_SAGAS=n` sagas of each kind; `make chaos` runs 1,000 of each,
`make chaos-short` 25. Prints the table fault x saga kind -> sagas, final, doubled, lost, and fails on any
loss. Run it on its own servers (the `make` targets do), never beside another test session.
"""

import asyncio
import os
import random
import signal
import subprocess
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pytest
from platform_runtime.client import PlatformClient, new_id
from platform_schemas import new_envelope
from platform_schemas.commands.billing import RunBonusBatch
from platform_schemas.commands.contracts import (
    AcceptOffer, ApproveMilestone, GiveBonus, MilestoneSpec, SendOffer, SubmitWork, WithdrawOffer,
)

from tests.support.checks import query
from tests.support.processes import Platform, TEST_PORTS
from tests.support.story import Parties, parties

SAGAS = int(os.environ.get("CHAOS_SAGAS", "0"))
pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.timeout(0),
              pytest.mark.skipif(not SAGAS, reason="opt-in: CHAOS_SAGAS=n (make chaos / make chaos-short)")]
ROOT = Path(__file__).resolve().parents[2]
FINAL = {"completed", "failed", "needs_attention"}
PAIRS = 10  # clients (with a card) and freelancers the contracts are spread over


class Faults:
    """Injects the faults in the background and remembers when each happened, to label the sagas."""

    def __init__(self, platform: Platform, seconds: float) -> None:
        self.platform, self.seconds = platform, seconds
        self.timeline: list[tuple[float, str]] = [(time.time(), "none")]

    def label_at(self, moment: float) -> str:
        return [label for at, label in self.timeline if at <= moment][-1]

    async def run(self) -> None:
        plan = ["kill contracts", "kill billing", "kill escrow", "restart postgres", "kill contracts",
                "restart kafka", "kill billing", "kill escrow"]
        rng = random.Random(11)
        for fault in plan:
            await asyncio.sleep(rng.uniform(0.3, 1.0) * self.seconds / len(plan))
            self.timeline.append((time.time(), fault))
            what, name = fault.split(" ")
            if what == "kill":
                await self.platform.restart(f"{name}#0", signal.SIGKILL)
            else:
                await asyncio.to_thread(self._restart_server, name)
            self.timeline.append((time.time(), f"after {fault}"))

    @staticmethod
    def _restart_server(name: str) -> None:
        script = ["deploy/local/postgres.sh"] if name == "postgres" else ["deploy/local/kafka/kafka-local.sh"]
        subprocess.run([*script, "stop"], cwd=ROOT, check=True, capture_output=True)
        time.sleep(2)
        subprocess.run([*script, "start"], cwd=ROOT, check=True, capture_output=True)


async def send(client: PlatformClient, data, subject: str, actor: str) -> None:
    """Publish, retrying while the broker is down (the platform's caller would too)."""
    envelope = new_envelope(data, subject=subject, actor=actor, source="chaos")
    for attempt in range(120):
        try:
            await client.send_raw(client.topic_of(data), envelope.to_json(), key=subject)
            return
        except Exception:  # noqa: BLE001 - broker restarting
            await asyncio.sleep(0.5)
    raise RuntimeError(f"could not publish {type(data).__name__} for {subject}")


async def contract_statuses(platform: Platform, ids: list[str]) -> dict[str, str]:
    for _ in range(120):
        try:
            rows = await query(platform, "contracts", "SELECT contract_id, status FROM contracts "
                               "WHERE contract_id = ANY($1)", ids)
            return {r["contract_id"]: r["status"] for r in rows}
        except Exception:  # noqa: BLE001 - PostgreSQL restarting
            await asyncio.sleep(0.5)
    raise RuntimeError("contracts database unreachable")


async def milestone_statuses(platform: Platform, ids: list[str]) -> dict[str, str]:
    rows = await query(platform, "contracts", "SELECT contract_id, status FROM milestones "
                       "WHERE contract_id = ANY($1)", ids)
    return {r["contract_id"]: r["status"] for r in rows}


async def until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = await condition()
            if result:
                return result
        except Exception:  # noqa: BLE001 - a server restarting
            pass
        await asyncio.sleep(1)
    raise TimeoutError(what)


async def drive(client: PlatformClient, platform: Platform, pairs: list[Parties]) -> dict[str, list[str]]:
    """3n offers (fund sagas); n of them accepted, worked on and approved (release sagas), n withdrawn (refund
    sagas), n accepted and given a bonus, then the day's bonus batch (bonus batch)."""
    n = SAGAS
    offers: dict[str, Parties] = {}
    for i in range(3 * n):
        people = pairs[i % len(pairs)]
        contract_id = new_id("chaos")
        offers[contract_id] = people
        await send(client, SendOffer(contract_id=contract_id, client_id=people.client_id,
                                     freelancer_id=people.freelancer_id, title="Chaos", currency="USD",
                                     milestones=[MilestoneSpec(milestone_id=new_id("cm"), title="Only",
                                                               amount=1_000 + i)]),
                   contract_id, people.client_id)
    ids = list(offers)
    release, refund, bonus = ids[:n], ids[n:2 * n], ids[2 * n:]

    async def every_offer_recorded():
        rows = await query(platform, "contracts", "SELECT contract_id, milestone_id FROM milestones "
                           "WHERE contract_id = ANY($1)", ids)
        return rows if len(rows) == len(ids) else None
    ms_of = {r["contract_id"]: r["milestone_id"] for r in await until(every_offer_recorded, 600, "offers recorded")}

    async def all_in(group: list[str], status: str, of=contract_statuses) -> bool:
        statuses = await of(platform, group)
        return sum(1 for c in group if statuses.get(c) == status) == len(group)

    await until(lambda: all_in(ids, "offered"), 600 + 10 * n, "every offer funded")
    for c in refund:
        await send(client, WithdrawOffer(contract_id=c), c, offers[c].client_id)
    for c in release + bonus:
        await send(client, AcceptOffer(contract_id=c), c, offers[c].freelancer_id)
    await until(lambda: all_in(release + bonus, "active"), 600 + 10 * n, "every offer accepted")
    for c in release:
        await send(client, SubmitWork(contract_id=c, milestone_id=ms_of[c], message="done"), c,
                   offers[c].freelancer_id)
    for c in bonus:
        await send(client, GiveBonus(contract_id=c, bonus_id=new_id("cb"), amount=500, note="thanks"), c,
                   offers[c].client_id)
    await until(lambda: all_in(release, "submitted", milestone_statuses), 600 + 10 * n, "all work submitted")
    for c in release:
        await send(client, ApproveMilestone(contract_id=c, milestone_id=ms_of[c], keep_open=True), c,
                   offers[c].client_id)
    day = datetime.now(timezone.utc).date()
    await send(client, RunBonusBatch(business_date=day), f"bonus-batch-{day}", "admin:chaos")
    return {"fund": ids, "release": release, "refund": refund, "bonus": bonus, "day": [day.isoformat()]}


async def test_every_saga_ends_and_no_money_is_lost_or_doubled_under_chaos(infra):
    platform = Platform(infra.kafka_bootstrap, infra.postgres_url, prefix="chaos_",
                        env={"SAGA_STEP_TIMEOUT": "PT10S", "TIMER_POLL_INTERVAL": "0.5"})
    await platform.prepare()
    await platform.start_all()
    client = PlatformClient(bootstrap=infra.kafka_bootstrap, ports=dict(TEST_PORTS))
    await client.start()
    try:
        pairs = [await parties(client) for _ in range(PAIRS)]
        faults = Faults(platform, seconds=max(60.0, SAGAS * 0.6))
        chaos = asyncio.create_task(faults.run())
        try:
            groups = await drive(client, platform, pairs)
            await chaos
        finally:
            chaos.cancel()  # a server restart under way still finishes (its thread is not cancelled)
        report = await settle_and_check(platform, client, groups, faults)
    finally:
        await client.stop()
        platform.stop_all()
    assert report["lost"] == 0 and report["doubled"] == 0 and report["ledger_ok"] and report["balanced"], report


async def settle_and_check(platform: Platform, client: PlatformClient, groups: dict, faults: Faults) -> dict:
    ids = groups["fund"]

    async def sagas():
        rows = await query(platform, "contracts", "SELECT saga_id, kind, contract_id, status, "
                           "extract(epoch from created_at) AS at FROM sagas WHERE contract_id = ANY($1)", ids)
        return rows

    async def settled():
        rows = await sagas()
        expected = len(ids) + len(groups["release"]) + len(groups["refund"])
        return rows if len(rows) >= expected and all(r["status"] in FINAL for r in rows) else None

    try:
        rows = await until(settled, 900 + 10 * SAGAS, "every saga final")
    except TimeoutError:
        rows = await sagas()
    bonuses = await until(lambda: query(platform, "billing", "SELECT bonus_id, contract_id, status FROM bonuses "
                                        "WHERE contract_id = ANY($1)", groups["bonus"]), 60, "bonuses known")
    batch_done = await until(lambda: query(platform, "billing", "SELECT status FROM bonus_batches WHERE "
                                           "business_date = $1::date AND status = 'completed'",
                                           datetime.fromisoformat(groups["day"][0]).date()), 300, "batch completed")

    charged = {r["contract_id"]: r["n"] for r in await query(
        platform, "billing", "SELECT contract_id, count(*) AS n FROM charges WHERE status = 'succeeded' "
        "AND contract_id = ANY($1) GROUP BY contract_id", ids)}
    table: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in rows:
        row = table[(faults.label_at(float(r["at"])), r["kind"])]
        row[0] += 1
        row[1] += r["status"] in FINAL
        row[2] += r["kind"] == "fund" and charged.get(r["contract_id"], 0) > 1
        row[3] += r["status"] not in FINAL
    started = {r["contract_id"] for r in rows if r["kind"] == "fund"}
    missing = {"fund": len(set(ids) - started),
               "release": len(set(groups["release"]) - {r["contract_id"] for r in rows if r["kind"] == "release"}),
               "refund": len(set(groups["refund"]) - {r["contract_id"] for r in rows if r["kind"] == "refund"})}
    for kind, count in missing.items():
        table[("(never started)", kind)][0] += count
        table[("(never started)", kind)][3] += count
    settled_bonuses = sum(1 for b in bonuses if b["status"] in ("paid", "failed"))
    table[("(whole run)", "bonus batch")] = [len(bonuses), settled_bonuses, 0, len(groups["bonus"]) - settled_bonuses]

    check = await client.get_json("escrow", "/ledger/check")
    gateway = (await query(platform, "gateway", "SELECT coalesce(sum(amount), 0) AS charged, "
                           "coalesce(sum(refunded), 0) AS refunded FROM sim_charges"))[0]
    escrow = (await query(platform, "escrow", "SELECT coalesce(sum(funded), 0) AS funded, "
                          "coalesce(sum(released), 0) AS released, coalesce(sum(refunded), 0) AS refunded, "
                          "coalesce(sum(funded - released - refunded), 0) AS held FROM holdings"))[0]
    bonus_posted = (await query(platform, "escrow", "SELECT coalesce(sum(amount), 0) AS n FROM earnings "
                                "WHERE kind = 'bonus'"))[0]["n"]
    fixed_charged = gateway["charged"] - bonus_posted
    balanced = fixed_charged == escrow["held"] + escrow["released"] + escrow["refunded"]

    print("\nfault x saga kind -> sagas, final, doubled, lost")
    print(f"{'fault':28} {'kind':12} {'sagas':>6} {'final':>6} {'doubled':>8} {'lost':>5}")
    for (fault, kind), (n, final, doubled, lost) in sorted(table.items()):
        print(f"{fault:28} {kind:12} {n:6} {final:6} {doubled:8} {lost:5}")
    statuses: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        statuses[(r["kind"], r["status"])] += 1
    print(f"saga statuses (needs_attention is final for the platform but waits for an operator): "
          f"{dict(sorted(statuses.items()))}")
    print(f"gateway charged {gateway['charged']} (bonuses {bonus_posted}); escrow held {escrow['held']} + released "
          f"{escrow['released']} + refunded {escrow['refunded']}; ledger check ok={check['ok']} "
          f"{check['problems'][:3]}; batch completed={bool(batch_done)}")
    return {"lost": sum(v[3] for v in table.values()), "doubled": sum(v[2] for v in table.values()),
            "ledger_ok": check["ok"], "balanced": balanced}
