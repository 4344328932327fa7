"""200 offers through the fund saga while contracts, billing and escrow are each SIGKILLed and restarted.

Each service is killed while it is busy with the saga: contracts once OfferSent events flow (its
relay is publishing and its consumer is mid-batch), billing once charges flow, escrow once holds flow.
From outside we cannot pick the instant between a relay's send and its mark-sent; killing a relay
that is publishing under load lands in that window often, and its rows are then published again
with the same ids. Offers sent while a service is down wait in Kafka.

At the end, polled with a deadline: every saga is final, one gateway charge per offer sent (none
twice), escrow holds every deposit, and the ledger check is clean. A SIGKILLed consumer's
partitions come back only after its session timeout (10 s), three times over.
"""

import asyncio
import time
from collections import Counter
from datetime import datetime, timezone

import pytest
from platform_runtime.client import PlatformClient

from tests.support.checks import charge_key, ledger_is_clean, query
from tests.support.story import Parties, offer, parties

pytestmark = [pytest.mark.e2e, pytest.mark.crash]
OFFERS = 200
WAVES = (70, 70, 60)  # one wave before each kill; later waves are sent while the killed service restarts
CLIENTS = 20
TOKENS = ["tok_visa", "tok_visa", "tok_visa", "tok_timeoutAfterCharge"]  # a quarter also retry at the gateway


async def eventually(condition, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = await condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout}s (last: {result!r})")
        await asyncio.sleep(every)


class Offers:
    """The offers of this test: sent in waves, each with a unique deposit amount."""

    def __init__(self, client: PlatformClient, people: list[Parties]) -> None:
        self.client, self.people = client, people
        self.commands = []
        self.deposits: dict[str, int] = {}
        self._subjects_by_type: dict[str, set[str]] = {}
        self._read = 0  # client.events only grows: index what is new since the last look

    async def send_wave(self, count: int) -> set[str]:
        start = len(self.commands)
        datas = [offer(self.people[i % len(self.people)], amounts=(10_000 + i, 20_000))
                 for i in range(start, start + count)]
        self.commands += await asyncio.gather(*(
            self.client.send(d, subject=d.contract_id, actor=d.client_id) for d in datas))
        self.deposits.update({d.contract_id: d.milestones[0].amount for d in datas})
        return {d.contract_id for d in datas}

    def republished(self) -> dict[str, int]:
        """Per service, how many of this test's events reached Kafka more than once (a relay killed
        between sending and marking sent); informative, since the kill instant is not ours to pick."""
        ours = set(self.deposits)
        counts = Counter((e.source, e.id) for e in self.client.events if e.subject in ours)
        again = Counter(source for (source, _), n in counts.items() if n > 1)
        return dict(again)

    def seen(self, type_name: str, contracts: set[str]) -> set[str]:
        """The contracts among `contracts` that a `type_name` event is about."""
        events = self.client.events
        for e in events[self._read:]:
            self._subjects_by_type.setdefault(e.type, set()).add(e.subject)
        self._read = len(events)
        return self._subjects_by_type.get(type_name, set()) & contracts

    async def at_least(self, count: int, type_name: str, contracts: set[str]) -> None:
        """Returns as soon as these events flow (polled often: the kill should land mid-flow)."""
        async def enough():
            return len(self.seen(type_name, contracts)) >= count
        await eventually(enough, 90, f"{count} {type_name} events", every=0.02)


async def saga_statuses(platform, contract_ids: list[str]) -> dict[str, int]:
    rows = await query(platform, "contracts", "SELECT status, count(*) AS n FROM sagas "
                       "WHERE kind = 'fund' AND contract_id = ANY($1) GROUP BY status", contract_ids)
    return {r["status"]: r["n"] for r in rows}


@pytest.mark.timeout(420)
async def test_offers_survive_each_saga_service_being_killed_and_restarted(client, platform):
    started_at = datetime.now(timezone.utc)
    people = list(await asyncio.gather(*(parties(client, token=TOKENS[i % len(TOKENS)]) for i in range(CLIENTS))))
    offers = Offers(client, people)

    wave = await offers.send_wave(WAVES[0])
    await offers.at_least(5, "OfferSent", wave)  # contracts' relay is publishing, its consumer mid-batch
    wave2, _ = await asyncio.gather(offers.send_wave(WAVES[1]), platform.restart("contracts#0"))

    await offers.at_least(5, "ClientCharged", wave2)  # billing is charging through the gateway
    wave3, _ = await asyncio.gather(offers.send_wave(WAVES[2]), platform.restart("billing#0"))

    await offers.at_least(5, "EscrowFunded", wave3)  # escrow is appending to the ledger
    await platform.restart("escrow#0")

    contract_ids = list(offers.deposits)
    assert len(contract_ids) == OFFERS

    async def all_final():
        statuses = await saga_statuses(platform, contract_ids)
        return statuses if sum(n for s, n in statuses.items() if s != "running") == OFFERS else None
    statuses = await eventually(all_final, 150, "every fund saga final")
    assert statuses == {"completed": OFFERS}

    # Offers sent (each counted once: a re-published event keeps its id and its contract).
    await eventually(lambda: _true(len(offers.seen("OfferSent", set(contract_ids))) == OFFERS), 30,
                     "every OfferSent visible")
    contracts = await query(platform, "contracts", "SELECT status, count(*) AS n FROM contracts "
                            "WHERE contract_id = ANY($1) GROUP BY status", contract_ids)
    assert {r["status"]: r["n"] for r in contracts} == {"offered": OFFERS}

    # The gateway's own store: one charge per offer, never two.
    keys = [charge_key(c) for c in offers.commands]
    charges = await query(platform, "gateway", "SELECT idempotency_key, amount FROM sim_charges "
                          "WHERE created_at >= $1", started_at)
    ours = {r["idempotency_key"]: r["amount"] for r in charges if r["idempotency_key"] in set(keys)}
    assert len(charges) == len({r["idempotency_key"] for r in charges}) == len(ours) == OFFERS
    assert sorted(ours.values()) == sorted(offers.deposits.values())

    # Escrow holds every deposit, once.
    held = await query(platform, "escrow", "SELECT contract_id, sum(funded - released - refunded) AS held "
                       "FROM holdings WHERE contract_id = ANY($1) GROUP BY contract_id", contract_ids)
    assert {r["contract_id"]: r["held"] for r in held} == offers.deposits
    funds = await query(platform, "escrow", "SELECT count(*) AS n FROM ledger_transactions "
                        "WHERE kind = 'fund' AND contract_id = ANY($1)", contract_ids)
    assert funds[0]["n"] == OFFERS

    # Billing charged each once too, and the ledger recomputed from its postings is clean.
    billed = await query(platform, "billing", "SELECT count(*) AS n FROM charges "
                         "WHERE status = 'succeeded' AND contract_id = ANY($1)", contract_ids)
    assert billed[0]["n"] == OFFERS
    await ledger_is_clean(client)
    print(f"events published again after a kill (same id, seen twice): {offers.republished()}")


async def _true(value: bool) -> bool:
    return value
