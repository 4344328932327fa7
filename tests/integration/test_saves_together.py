"""A batch's saves written together, on real PostgreSQL (issue 10, thirty-fifth step): contracts' saves left for
later go to PostgreSQL as one statement per run of one shape (adapters/saves_together.py), where each save was a
statement of its own (a run of one or two still is).

What must hold: the same saves, written together or each at once, leave the same rows in every table (a contract,
milestone or saga saved twice in one run included, as saved last; every save's history and statement entries, in
the order saved); the transaction's next read sees them; a claim not made (a contract's or milestone's id taken,
or claimed twice in the run) fails the batch (IsolationNeeded), to be handled again one savepoint each, where the
save alone is refused `id_taken`; and a run is one statement.
"""

import uuid
from datetime import datetime, timedelta, timezone
from unittest.mock import patch

import pytest
import pytest_asyncio
from platform_runtime.errors import IsolationNeeded, Rejected

from contracts.adapters import saves_together
from contracts.adapters.repositories import ContractRepository, SagaRepository, Seen
from contracts.adapters.tables import metadata
from contracts.bootstrap import definition
from contracts.domain.contracts import Contract, Milestone
from contracts.domain.statement import Movement
from tests.integration.test_saga_prefetch import fund_saga
from tests.support.probe_service import ServiceDatabase, migrated_databases

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 7, tzinfo=timezone.utc)

TABLES = {
    "contracts": "SELECT * FROM contracts ORDER BY contract_id",
    "milestones": "SELECT * FROM milestones ORDER BY milestone_id",
    "milestone_history": "SELECT milestone_id, status, event, at FROM milestone_history ORDER BY seq",
    "sagas": "SELECT * FROM sagas ORDER BY saga_id",
    "statement_entries": "SELECT * FROM statement_entries ORDER BY entry_id",
}


async def in_batch(db: ServiceDatabase, together: bool, work) -> None:
    """`work` in one unit of work, as a batch's first try (together: its saves left for later) or its second
    (each save at once)."""
    async with db.new_uow() as uow:
        uow.savepoint_per_message = not together
        await work(ContractRepository(uow.session, Seen()), SagaRepository(uow.session, Seen()))
        await uow.commit()


@pytest_asyncio.fixture(loop_scope="session")
async def two(infra):
    """Two contracts databases: the same saves written together in one, each at once in the other."""
    async with migrated_databases(infra.postgres_url, "saves", definition.migrations_dir, metadata, "contracts",
                                  2) as found:
        yield found


def offer(contract_id: str, milestones: int = 2) -> Contract:
    return Contract.offer(contract_id, "cl", "fl", f"T {contract_id}", "USD", "all_milestones",
                          [Milestone(f"{contract_id}-m{i}", f"M{i}", 100 * (i + 1), i + 1) for i in range(milestones)],
                          NOW)


def entries(contract_id: str, n: int) -> list[Movement]:
    return [Movement(f"{contract_id}:e{n}:{i}", "milestone", f"{contract_id}-m{i}", "funded", 100, NOW)
            for i in range(2)]


async def the_saves(contracts: ContractRepository, sagas: SagaRepository, step: int) -> None:
    """Three transactions' worth of saves, of every shape the fund saga and the milestones' commands make."""
    at = NOW + timedelta(minutes=step)
    if step == 0:  # offers: new contracts, their milestones claimed, their sagas, their entries
        for c in ("c1", "c2", "c3"):
            await contracts.save(offer(c), "SendOffer", at, saga=fund_saga(c, f"{c}-cmd", f"{c}-m0"),
                                 entries=entries(c, 0))
        return
    loaded = {c: await contracts.get(c) for c in ("c1", "c2", "c3")}  # every read first: the saves in runs
    saga = {c: fund_saga(c, f"{c}-cmd", f"{c}-m0") for c in loaded}
    if step == 1:
        for c, contract in loaded.items():  # changed: the contract and a milestone moved, its saga, its entries
            contract.status = "active"
            contract.milestones[0].status = "funded"
            saga[c].advance("EscrowFunded", "done", at)
            await contracts.save(contract, "EscrowFunded", at, saga=saga[c], entries=entries(c, 1))
        # c1 again in the same run (the same shape): its other milestone moved, its saga further on
        loaded["c1"].milestones[1].status = "funded"
        loaded["c1"].title = "c1 again"
        saga["c1"].advance("Again", "later", at + timedelta(seconds=1))
        await contracts.save(loaded["c1"], "Again", at + timedelta(seconds=1), saga=saga["c1"],
                             entries=entries("c1", 2))
        for c in ("c2", "c3", "c2"):  # sagas alone, c2's twice
            saga[c].resent(at + timedelta(seconds=2))
            await sagas.save(saga[c])
    if step == 2:  # a loaded contract's new milestone (claimed), and a milestone's title alone
        loaded["c2"].milestones.append(Milestone("c2-m9", "M9", 900, 3))
        await contracts.save(loaded["c2"], "MilestoneAdded", at)
        loaded["c3"].milestones[1].title = "renamed"
        await contracts.save(loaded["c3"], "MilestoneEdited", at)


async def test_saves_written_together_leave_the_rows_they_leave_each_at_once(two):
    together, at_once = two
    runs = []
    write_all = saves_together.ContractSaves.write_all

    async def counted(self, driver, saves):
        runs.append((self.shape, len(saves)))
        await write_all(self, driver, saves)

    with patch.object(saves_together.ContractSaves, "write_all", counted):
        for step in range(3):
            await in_batch(together, True, lambda c, s, step=step: the_saves(c, s, step))
    for step in range(3):
        await in_batch(at_once, False, lambda c, s, step=step: the_saves(c, s, step))
    assert await together.rows(TABLES) == await at_once.rows(TABLES)
    rows = await together.rows(TABLES)
    assert len(rows["milestone_history"]) == 6 + 3 + 1 + 1  # claimed, moved, moved again, the new milestone
    assert [r[1] for r in rows["sagas"]] and len(rows["statement_entries"]) == 3 * 2 + 3 * 2 + 2
    # The offers in one statement; the four changes in one (one shape, c1 twice in it); the sagas alone in one, c2
    # twice in it. The last transaction's two saves are two shapes, each a run of one: its own statement.
    assert [n for _, n in runs] == [3, 4, 3], runs


async def test_a_claim_not_made_fails_the_batch_and_alone_is_refused_id_taken(two):
    db, _ = two
    await in_batch(db, False, lambda c, s: c.save(offer("taken"), "SendOffer", NOW))
    for odd_id in ("taken", "fresh-1", "fresh-2"):

        async def batch(c, s, odd_id=odd_id):  # each try from the message, as the consumer handles it again
            odd_one = offer(odd_id)
            if odd_id != "taken":  # a milestone's id another contract holds
                odd_one.milestones[1].milestone_id = "taken-m1"
            await c.save(offer(f"ok-{uuid.uuid4().hex[:6]}"), "SendOffer", NOW)
            await c.save(odd_one, "SendOffer", NOW)

        with pytest.raises(IsolationNeeded):
            await in_batch(db, True, batch)
        with pytest.raises(Rejected) as refused:
            await in_batch(db, False, batch)
        assert refused.value.reason_code == "id_taken"

    async def twice(c, s):  # one id claimed twice in one run
        await c.save(offer("twice"), "SendOffer", NOW)
        await c.save(offer("twice"), "SendOffer", NOW)

    with pytest.raises(IsolationNeeded):
        await in_batch(db, True, twice)
    assert [r for r in (await db.rows(TABLES))["contracts"] if r[0].startswith(("ok-", "fresh", "twice"))] == []


async def test_the_next_read_sees_what_was_left(two):
    db, _ = two

    async def batch(c, s):
        await c.save(offer("seen"), "SendOffer", NOW, saga=fund_saga("seen", "seen-cmd", "seen-m0"))
        contract = await c.get("seen")  # a read: what was left goes first
        assert [m.milestone_id for m in contract.milestones] == ["seen-m0", "seen-m1"]

    await in_batch(db, True, batch)
