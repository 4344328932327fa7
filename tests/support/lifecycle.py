"""End-to-end building blocks for the contract lifecycle: deals, commands with their outcomes, money checks.

`Events` indexes what the PlatformClient reads (by correlation id and by subject) and wakes waiters as
events arrive, so hundreds of concurrent stories can each wait for their own outcome cheaply.
`money_checked` (autouse where imported) checks after each test that the ledger is clean and that the
escrow of every contract the test touched equals its funded, unreleased milestones.
"""

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest_asyncio
from platform_runtime.client import PlatformClient, new_id
from platform_schemas import Envelope, Message
from platform_schemas.commands.contracts import AcceptOffer, MilestoneSpec, SendOffer, SubmitWork

from tests.support.story import Parties, add_card, register

Predicate = Callable[[Envelope], bool]
MOVING = {"funding", "releasing", "refunding"}
HOLDING = {"funded", "submitted", "changes_requested", "releasing", "refund_requested", "disputed", "refunding"}


class Events:
    """The client's events, indexed; one per client (`Events.of(client)`)."""

    def __init__(self, client: PlatformClient) -> None:
        self.by_key: dict[tuple[str, str | None], list[Envelope]] = defaultdict(list)
        self.waiters: dict[tuple[str, str | None], list[tuple[Predicate, asyncio.Future]]] = defaultdict(list)
        for envelope in client.events:
            self._index(envelope)
        previous = client.on_event

        def on_event(envelope: Envelope) -> None:
            if previous:
                previous(envelope)
            self._index(envelope)

        client.on_event = on_event

    @classmethod
    def of(cls, client: PlatformClient) -> "Events":
        if not hasattr(client, "lifecycle_events"):
            client.lifecycle_events = cls(client)
        return client.lifecycle_events

    def _index(self, envelope: Envelope) -> None:
        for key in (("correlation", envelope.correlationid), ("subject", envelope.subject)):
            self.by_key[key].append(envelope)
            for waiter in list(self.waiters.get(key, ())):
                predicate, future = waiter
                if not future.done() and predicate(envelope):
                    future.set_result(envelope)

    async def first(self, key: tuple[str, str | None], predicate: Predicate, timeout: float, what: str) -> Envelope:
        for envelope in self.by_key.get(key, ()):
            if predicate(envelope):
                return envelope
        waiter = (predicate, asyncio.get_running_loop().create_future())
        self.waiters[key].append(waiter)
        try:
            return await asyncio.wait_for(waiter[1], timeout)
        except TimeoutError:
            raise TimeoutError(f"no {what} within {timeout}s") from None
        finally:
            self.waiters[key].remove(waiter)

    def about(self, subject: str, type_name: str | None = None) -> list[Envelope]:
        """Events about a contract or account, each once (a re-published event keeps its id)."""
        unique = {e.id: e for e in self.by_key.get(("subject", subject), ()) if type_name in (None, e.type)}
        return list(unique.values())


@dataclass
class Deal:
    """A contract under test: its parties and its milestones (ids and amounts, in order)."""

    contract_id: str
    client_id: str
    freelancer_id: str
    milestones: dict[str, int]

    @property
    def ids(self) -> list[str]:
        return list(self.milestones)


@dataclass
class Platform:
    """The tests' side of the platform: send a command, wait for its outcome or for an event."""

    client: PlatformClient
    events: Events = field(init=False)

    def __post_init__(self) -> None:
        self.events = Events.of(self.client)

    async def send(self, data: Message, actor: str, subject: str | None = None, topic: str | None = None) -> Envelope:
        """To the command's own topic (platform_schemas.actors), or to `topic` to try another."""
        return await self.client.send(data, subject=subject or getattr(data, "contract_id", None)
                                      or data.account_id, actor=actor, topic=topic)

    async def outcome(self, command: Envelope, types: set[str], timeout: float = 30) -> Envelope:
        return await self.events.first(
            ("correlation", command.id),
            lambda e: e.type in types or (e.type == "CommandRejected" and e.data.get("command_id") == command.id),
            timeout, f"outcome {sorted(types)} of {command.type} {command.id}")

    async def do(self, data: Message, actor: str, *types: str, subject: str | None = None,
                 timeout: float = 30) -> Envelope:
        """Send a command that must succeed; returns the event that ended it."""
        command = await self.send(data, actor, subject)
        outcome = await self.outcome(command, set(types), timeout)
        assert outcome.type in types, f"{command.type} ended in {outcome.type}: {outcome.data}"
        return outcome

    async def refused(self, data: Message, actor: str, subject: str | None = None, timeout: float = 30,
                      topic: str | None = None) -> str:
        """Send a command that must be refused; returns its reason code."""
        command = await self.send(data, actor, subject, topic)
        outcome = await self.outcome(command, set(), timeout)
        return outcome.data["reason_code"]

    async def event(self, subject: str, type_name: str, timeout: float = 30, **match: object) -> Envelope:
        return await self.events.first(
            ("subject", subject), lambda e: e.type == type_name and all(e.data.get(k) == v for k, v in match.items()),
            timeout, f"{type_name} {match} about {subject}")

    async def caused(self, command: Envelope, type_name: str, timeout: float = 30, **match: object) -> Envelope:
        """An event the command caused (same correlation id), e.g. MilestonePaid after ApproveMilestone."""
        return await self.events.first(
            ("correlation", command.id),
            lambda e: e.type == type_name and all(e.data.get(k) == v for k, v in match.items()),
            timeout, f"{type_name} caused by {command.type} {command.id}")

    # -- stories -------------------------------------------------------------------------------------
    async def parties(self, token: str | None = "tok_visa") -> Parties:
        client_id, freelancer_id = await asyncio.gather(register(self.client, "client"),
                                                        register(self.client, "freelancer"))
        if token:
            await add_card(self.client, client_id, token)
        return Parties(client_id, freelancer_id)

    async def offer(self, people: Parties, amounts: tuple[int, ...] = (50_000,), deposit: str = "first_milestone",
                    expect: str = "OfferSent", timeout: float = 30) -> Deal:
        deal = Deal(new_id("contract"), people.client_id, people.freelancer_id,
                    {new_id("ms"): amount for amount in amounts})
        await self.do(SendOffer(contract_id=deal.contract_id, client_id=deal.client_id,
                                freelancer_id=deal.freelancer_id, title="Brand identity", currency="USD",
                                deposit=deposit,
                                milestones=[MilestoneSpec(milestone_id=m, title=f"Milestone {i + 1}", amount=a)
                                            for i, (m, a) in enumerate(deal.milestones.items())]),
                      deal.client_id, expect, timeout=timeout)
        return deal

    async def active_deal(self, people: Parties, amounts: tuple[int, ...] = (50_000,),
                          deposit: str = "first_milestone", timeout: float = 30) -> Deal:
        deal = await self.offer(people, amounts, deposit, timeout=timeout)
        await self.do(AcceptOffer(contract_id=deal.contract_id), deal.freelancer_id, "ContractStarted",
                      timeout=timeout)
        return deal

    async def submit(self, deal: Deal, milestone_id: str | None = None) -> Envelope:
        """Submit work; returns WorkSubmitted (with `review_due_at`)."""
        return await self.do(SubmitWork(contract_id=deal.contract_id, milestone_id=milestone_id or deal.ids[0],
                                        message="Here it is"), deal.freelancer_id, "WorkSubmitted")

    # -- read side -----------------------------------------------------------------------------------
    async def contract(self, contract_id: str) -> dict:
        return await self.client.get_json("contracts", f"/contracts/{contract_id}")

    async def milestone(self, contract_id: str, milestone_id: str) -> dict:
        return next(m for m in (await self.contract(contract_id))["milestones"] if m["milestone_id"] == milestone_id)

    async def account(self, account_id: str) -> dict:
        return await self.client.get_json("contracts", f"/accounts/{account_id}")

    async def history(self, account_id: str, contract_id: str | None = None) -> list[tuple[str, int, str | None]]:
        """(kind, amount, milestone id) of an account's transactions, oldest first, optionally of one contract."""
        return [(kind, amount, milestone_id) for kind, amount, milestone_id, of in await self._history_rows(account_id)
                if contract_id in (None, of)]

    async def _history_rows(self, account_id: str) -> list[tuple[str, int, str | None, str | None]]:
        items, cursor = [], ""
        while True:
            page = await self.client.get_json("billing", f"/accounts/{account_id}/transactions?limit=1000{cursor}")
            items += page["items"]
            if "next" not in page:
                break
            cursor = f"&next={page['next']}"
        return [(t["kind"], t["amount"], t.get("milestone_id"), t.get("contract_id")) for t in items]

    async def expect_history(self, account_id: str, contract_id: str, expected: list[tuple[str, int, str | None]],
                             timeout: float = 30) -> None:
        """The account's history of the contract becomes `expected` (any order): billing records it after the
        money moved, from escrow's events, so it may come a moment after the contracts service's outcome."""
        deadline = time.monotonic() + timeout
        while sorted(found := await self.history(account_id, contract_id)) != sorted(expected):
            if time.monotonic() > deadline:
                assert sorted(found) == sorted(expected), f"history of {account_id} on {contract_id}"
            await asyncio.sleep(0.2)

    async def histories(self, account_id: str) -> dict[str, list[tuple[str, int, str | None]]]:
        """An account's whole history, by contract: one read for many contracts."""
        by_contract: dict[str, list[tuple[str, int, str | None]]] = defaultdict(list)
        for kind, amount, milestone_id, contract_id in await self._history_rows(account_id):
            by_contract[contract_id].append((kind, amount, milestone_id))
        return by_contract

    async def settled(self, contract_id: str, timeout: float = 60) -> dict:
        """The contract once no money is moving on it (no funding, release or refund in flight)."""
        deadline = time.monotonic() + timeout
        while True:
            contract = await self.contract(contract_id)
            if contract["status"] != "funding" and not {m["status"] for m in contract["milestones"]} & MOVING:
                return contract
            if time.monotonic() > deadline:
                raise TimeoutError(f"contract {contract_id} still moving money: {contract}")
            await asyncio.sleep(0.2)

    async def assert_escrow_matches(self, contract_id: str) -> None:
        """Escrow holds, per milestone, exactly what the contract says is funded and not yet released."""
        contract = await self.settled(contract_id)
        expected = {m["milestone_id"]: m["amount"] - m["released_amount"] - m["refunded_amount"]
                    for m in contract["milestones"] if m["status"] in HOLDING}
        response = await self.client.get("escrow", f"/escrow/{contract_id}")
        if response.status_code == 404:
            assert not expected, f"{contract_id}: escrow has nothing, the contract holds {expected}"
            return
        escrow = response.json()
        held = {m["milestone_id"]: m["held"] for m in escrow["milestones"] if m["held"]}
        assert held == expected, f"{contract_id}: escrow holds {held}, milestones say {expected}"
        assert escrow["balance"] == sum(expected.values())

    async def assert_ledger_clean(self) -> None:
        check = await self.client.get_json("escrow", "/ledger/check")
        assert check["ok"], check["problems"]


def contracts_touched(events: list[Envelope]) -> set[str]:
    return {e.data["contract_id"] for e in events if e.source == "contracts" and "contract_id" in e.data}


@pytest_asyncio.fixture(loop_scope="session")
async def lifecycle(client) -> Platform:
    return Platform(client)


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def money_checked(client):
    """After the test: the ledger check is clean and every touched contract's escrow matches its milestones."""
    start = len(client.events)
    yield
    platform = Platform(client)
    touched = contracts_touched(client.events[start:])
    await asyncio.gather(*(platform.assert_escrow_matches(c) for c in touched))
    await platform.assert_ledger_clean()
