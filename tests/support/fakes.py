"""Hand-written fakes for unit tests (cosmicpython style): an in-memory unit of work and repositories.

The fake unit of work has the real one's semantics where tests depend on them: `publish()` builds
the same envelopes, the inbox (`claim`) tells new / duplicate / conflict by fingerprint, savepoints
roll back, and nothing reaches the shared `FakeStore` unless `commit()` is called.
"""

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from aiokafka import ConsumerRecord
from platform_runtime.clock import FrozenClock
from platform_runtime.unit_of_work import Cause, InboxVerdict, Outgoing, fingerprint
from platform_runtime.errors import Rejected
from platform_schemas import Envelope, Message, new_envelope

from contracts.domain.accounts import Account, activity_is_news
from contracts.domain.contracts import Contract
from contracts.domain.disputes import Dispute
from contracts.domain.sagas import Saga
from contracts.service_layer.context import Context
from contracts.settings import ContractsSettings

NOON = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


# -- the unit of work ---------------------------------------------------------------------------


@dataclass
class FakeStore:
    """What a database would hold after its commits: the inbox and the outbox."""

    inbox: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbox: list[Outgoing] = field(default_factory=list)
    timers: dict[str, dict[str, Any]] = field(default_factory=dict)
    commits: int = 0
    savepoints: int = 0


class FakeSavepoint:
    def __init__(self, uow: "FakeUnitOfWork") -> None:
        self.uow = uow
        self.inbox = copy.deepcopy(uow.inbox)
        uow.store.savepoints += 1

    async def commit(self) -> None:
        pass

    async def rollback(self) -> None:
        self.uow.inbox = self.inbox


class FakeSession:
    def __init__(self, uow: "FakeUnitOfWork") -> None:
        self.uow = uow

    async def begin_nested(self) -> FakeSavepoint:
        return FakeSavepoint(self.uow)


class FakeUnitOfWork:
    """Stands in for platform_runtime.unit_of_work.UnitOfWork; several may share one FakeStore."""

    def __init__(self, store: FakeStore | None = None, clock: FrozenClock | None = None,
                 service: str = "contracts") -> None:
        self.store = store if store is not None else FakeStore()
        self.clock = clock or FrozenClock(NOON)
        self.service = service
        self.cause: Cause | None = None
        self.outgoing: list[Outgoing] = []
        self.inbox = copy.deepcopy(self.store.inbox)
        self.timers = copy.deepcopy(self.store.timers)
        self.session = FakeSession(self)
        self.committed = False
        self.savepoint_per_message = True  # as UnitOfWork: the consumer turns it off for a batch's first try
        self.batch: dict = {}  # as UnitOfWork: what a dispatcher's prefetch read for the batch
        self.claimed_with: list[list[str]] = []  # the keys each claim_all was asked to read with its claims

    async def __aenter__(self) -> "FakeUnitOfWork":
        self.inbox = copy.deepcopy(self.store.inbox)
        self.outgoing, self.batch = [], {}
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.outgoing = []  # uncommitted work is lost, as in a rolled-back transaction

    def publish(self, topic: str, data: Message, *, subject: str, actor: str | None = None,
                event_id: str | None = None) -> Envelope:
        cause = self.cause
        envelope = new_envelope(
            data, subject=subject, source=self.service, id=event_id,
            actor=actor or (cause.actor if cause else "system"),
            correlationid=cause.correlation_id if cause else None,
            causationid=cause.message_id if cause else None, time=self.clock.now())
        self.outgoing.append(Outgoing.of(topic, envelope))
        return envelope

    async def commit(self) -> None:
        self.store.inbox = copy.deepcopy(self.inbox)
        self.store.timers = copy.deepcopy(self.timers)
        self.store.outbox += self.outgoing
        self.store.commits += 1
        self.outgoing = []
        self.committed = True

    async def claim(self, envelope: Envelope, status: str = "accepted") -> InboxVerdict:
        seen = self.inbox.get(envelope.id)
        if seen is None:
            self.inbox[envelope.id] = {"type": envelope.type, "fingerprint": fingerprint(envelope),
                                       "status": status, "outcome": None}
            return "new"
        return "duplicate" if seen["fingerprint"] == fingerprint(envelope) else "conflict"

    async def claim_all(self, envelopes: list[Envelope], status: str, kept: Sequence[str] = ()) -> None:
        """The real one claims a batch in one statement, and reads the answers kept under `kept` in it; here each
        message's own claim does it, and `recorded` reads the inbox. What was asked is kept, for tests."""
        self.claimed_with.append(list(kept))

    async def remember(self, key: str, type_: str, subject: str, outcome: dict[str, Any]) -> None:
        self.inbox.setdefault(key, {"type": type_, "fingerprint": "-", "status": "remembered", "outcome": outcome})

    async def recorded(self, key: str) -> dict[str, Any] | None:
        seen = self.inbox.get(key)
        return seen["outcome"] if seen else None

    async def recorded_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        return {k: self.inbox[k]["outcome"] for k in keys if k in self.inbox}

    async def set_command_status(self, command_id: str, status: str, outcome: dict[str, Any] | None = None) -> None:
        if command_id in self.inbox:
            self.inbox[command_id].update(status=status, outcome=outcome)

    def checkpoint(self) -> tuple[int, dict[str, dict[str, Any]]]:
        return len(self.outgoing), copy.deepcopy(self.timers)

    def restore(self, checkpoint: tuple[int, dict[str, dict[str, Any]]]) -> None:
        del self.outgoing[checkpoint[0]:]
        self.timers = checkpoint[1]

    async def schedule(self, timer_id: str, kind: str, subject: str, due_at: datetime,
                       payload: dict[str, Any]) -> None:
        self.timers.setdefault(timer_id, {"timer_id": timer_id, "kind": kind, "subject": subject, "due_at": due_at,
                                          "payload": payload, "cancelled": False, "fired": False})

    async def cancel_timers(self, subject: str, *kinds: str) -> None:
        for timer in self.timers.values():
            if timer["subject"] == subject and timer["kind"] in kinds and not timer["fired"]:
                timer["cancelled"] = True

    def pending_timers(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Timers neither fired nor cancelled, soonest first (what a timer runner would fire)."""
        pending = [t for t in self.timers.values() if not t["cancelled"] and not t["fired"]
                   and (kind is None or t["kind"] == kind)]
        return sorted(pending, key=lambda t: t["due_at"])

    # -- what tests read -----------------------------------------------------------------------
    def messages(self, topic: str | None = None) -> list[Envelope]:
        """Queued (not yet committed) messages, optionally on one topic."""
        return [o.envelope for o in self.outgoing if topic is None or o.topic == topic]

    def types(self, topic: str | None = None) -> list[str]:
        return [e.type for e in self.messages(topic)]

    def status_of(self, command_id: str) -> dict[str, Any] | None:
        return self.inbox.get(command_id)


# -- the contracts service's repositories -------------------------------------------------------


class FakeAccountRepository:
    def __init__(self, accounts: list[Account] = ()) -> None:
        self._rows = {a.account_id: copy.deepcopy(a) for a in accounts}

    async def get(self, account_id: str, lock: bool = False) -> Account | None:
        return copy.deepcopy(self._rows.get(account_id))

    async def add(self, account: Account) -> bool:
        if account.account_id in self._rows:
            return False
        self._rows[account.account_id] = copy.deepcopy(account)
        return True

    async def save(self, account: Account) -> None:
        self._rows[account.account_id] = copy.deepcopy(account)

    async def get_many(self, account_ids: list[str]) -> dict[str, Account]:
        return {a: copy.deepcopy(self._rows[a]) for a in account_ids if a in self._rows}

    async def record_activity(self, account_ids: list[str], now: datetime, resolution: timedelta) -> None:
        for account_id in account_ids:
            row = self._rows.get(account_id)
            if row is not None and activity_is_news(row.last_activity_at, now, resolution):
                row.last_activity_at = now

    def stored(self, account_id: str) -> Account:
        return self._rows[account_id]


class FakeContractRepository:
    def __init__(self, contracts: list[Contract] = (), sagas: "FakeSagaRepository | None" = None) -> None:
        self._rows = {c.contract_id: copy.deepcopy(c) for c in contracts}
        self.history: list[tuple[str, str]] = []  # (contract id, event) of every save
        self.sagas = sagas  # where a saga saved with its contract goes
        self.entries: list = []  # the statement's entries saved with a contract

    async def get(self, contract_id: str) -> Contract | None:
        return copy.deepcopy(self._rows.get(contract_id))

    async def milestone_ids_taken(self, ids: list[str]) -> list[str]:
        taken = {m.milestone_id for c in self._rows.values() for m in c.milestones}
        return [i for i in ids if i in taken]

    async def save(self, contract: Contract, event: str, now: datetime, *, saga: Saga | None = None,
                   entries: list = ()) -> None:
        """Like the real one: a new contract or milestone claims its id, and one already used is refused; the
        saga and the statement's entries given are saved with it."""
        if contract.is_new and contract.contract_id in self._rows:
            raise Rejected("id_taken", f"contract id {contract.contract_id} is already used (ids are never reused)")
        mine = {m.milestone_id for m in self._rows[contract.contract_id].milestones} \
            if contract.contract_id in self._rows else set()
        if taken := await self.milestone_ids_taken([m.milestone_id for m in contract.milestones
                                                    if m.milestone_id not in mine]):
            raise Rejected("id_taken", f"milestone ids already used: {', '.join(taken)}")
        contract.is_new = False
        self._rows[contract.contract_id] = copy.deepcopy(contract)
        self.history.append((contract.contract_id, event))
        if saga is not None:
            await self.sagas.save(saga)
        self.entries += entries

    def stored(self, contract_id: str) -> Contract | None:
        return self._rows.get(contract_id)


class FakeSagaRepository:
    def __init__(self) -> None:
        self._rows: dict[str, Saga] = {}

    async def get(self, saga_id: str) -> Saga | None:
        return copy.deepcopy(self._rows.get(saga_id))

    async def save(self, saga: Saga) -> None:
        self._rows[saga.saga_id] = copy.deepcopy(saga)

    def stored(self, saga_id: str) -> Saga:
        return self._rows[saga_id]

    def all(self) -> list[Saga]:
        return list(self._rows.values())


class FakeBonusRepository:
    def __init__(self) -> None:
        self._rows: dict[str, object] = {}
        self.settled: dict[str, tuple[str, str | None]] = {}

    async def add(self, bonus) -> bool:
        if bonus.bonus_id in self._rows:
            return False
        self._rows[bonus.bonus_id] = copy.deepcopy(bonus)
        return True

    async def settle(self, bonus_id: str, status: str, reason_code: str | None, now: datetime) -> None:
        self.settled[bonus_id] = (status, reason_code)

    async def given_on(self, client_id: str, currency: str, business_date) -> int:
        return sum(b.amount for b in self._rows.values()
                   if (b.client_id, b.currency, b.business_date) == (client_id, currency, business_date))


class FakeDisputeRepository:
    def __init__(self) -> None:
        self._rows: dict[str, Dispute] = {}

    async def add(self, dispute: Dispute) -> None:
        self._rows.setdefault(dispute.milestone_id, copy.deepcopy(dispute))

    async def get(self, milestone_id: str) -> Dispute | None:
        return copy.deepcopy(self._rows.get(milestone_id))

    async def save(self, dispute: Dispute) -> None:
        self._rows[dispute.milestone_id] = copy.deepcopy(dispute)

    def stored(self, milestone_id: str) -> Dispute:
        return self._rows[milestone_id]


class FakeUpcomingRepository:
    """Nothing dated ahead unless a test puts it there."""

    def __init__(self) -> None:
        self.items: dict[str, list] = {}
        self.bonuses: list = []

    async def of(self, account_id: str, now: datetime, reminder_before: timedelta, limit: int) -> list:
        return list(self.items.get(account_id, []))[:limit]

    async def pending_bonuses(self, account_id: str, limit: int) -> list:
        return [b for b in self.bonuses if account_id in (b.client_id, b.freelancer_id)][:limit]


@dataclass
class FakeContext(Context):
    """The contracts handlers' Context over in-memory repositories; the rest of Context is the real code."""

    def __post_init__(self) -> None:
        self.accounts = FakeAccountRepository()
        self.sagas = FakeSagaRepository()
        self.contracts = FakeContractRepository(sagas=self.sagas)
        self.bonuses = FakeBonusRepository()
        self.disputes = FakeDisputeRepository()
        self.upcoming = FakeUpcomingRepository()


def contracts_context(*accounts: Account, settings: ContractsSettings | None = None,
                      uow: FakeUnitOfWork | None = None) -> FakeContext:
    settings = settings or ContractsSettings(database_url="postgresql+asyncpg://fake/fake")
    ctx = FakeContext(uow or FakeUnitOfWork(), settings=settings)
    ctx.accounts = FakeAccountRepository(list(accounts))
    return ctx


# -- Kafka ---------------------------------------------------------------------------------------


class FakeDeadLetters:
    """Collects what would go to `<topic>.dlq`, with the error and the attempts."""

    def __init__(self) -> None:
        self.sent: list[tuple[ConsumerRecord, str, int]] = []

    async def send(self, record: ConsumerRecord, error: str, attempts: int) -> None:
        self.sent.append((record, error, attempts))

    @property
    def offsets(self) -> list[int]:
        return [record.offset for record, _, _ in self.sent]


def record(value: bytes, offset: int, topic: str = "contracts.commands", partition: int = 0,
           key: bytes | None = b"c-1") -> ConsumerRecord:
    """A consumed Kafka record, as aiokafka hands it over."""
    return ConsumerRecord(topic=topic, partition=partition, offset=offset, timestamp=0, timestamp_type=0,
                          key=key, value=value, checksum=None, serialized_key_size=len(key or b""),
                          serialized_value_size=len(value), headers=())
