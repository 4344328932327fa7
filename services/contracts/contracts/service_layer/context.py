"""What every contracts handler works with: the unit of work, its repositories, the settings."""

from dataclasses import dataclass, field

from platform_runtime.context import HandlerContext
from platform_runtime.errors import Rejected
from platform_schemas import Message
from platform_schemas.topics import BILLING_SAGA_COMMANDS, CONTRACTS_EVENTS, ESCROW_SAGA_COMMANDS

from ..adapters.bonus_repository import BonusRepository
from ..adapters.queues import DisputeRepository
from ..adapters.statement_repository import StatementRepository
from ..adapters.repositories import AccountRepository, ContractRepository, Preloaded, SagaRepository, Seen
from ..adapters.upcoming_repository import UpcomingRepository
from ..domain.accounts import Account, activity_is_news, activity_resolution
from ..domain.contracts import Contract
from ..domain.sagas import Saga
from ..domain.statement import Movement
from ..settings import ContractsSettings

# The keys of what a batch's prefetch read, in UnitOfWork.batch: the sagas of its replies (a Preloaded), the
# parties of its offers (account id -> Account).
PRELOADED_SAGAS, PRELOADED_ACCOUNTS = "contracts.sagas", "contracts.accounts"


@dataclass
class Context(HandlerContext):
    settings: ContractsSettings = field(kw_only=True)
    accounts: AccountRepository = field(init=False)
    contracts: ContractRepository = field(init=False)
    sagas: SagaRepository = field(init=False)
    bonuses: BonusRepository = field(init=False)
    disputes: DisputeRepository = field(init=False)
    upcoming: UpcomingRepository = field(init=False)
    # Accounts read (unlocked) by this handler: a second read of one is not another round trip.
    _accounts: dict[str, Account] = field(init=False, default_factory=dict)
    _seen: Seen = field(init=False, default_factory=Seen)
    # The statement's entries of the event being handled (service_layer/statement.py), written with the
    # contract when the handler saves it, else on their own when it returns (write_entries).
    _entries: tuple[str, list[Movement]] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        # The batch's preloaded sagas (sagas/replies.py: read_sagas_ahead), shared by the handlers of one transaction.
        self._seen.batch = self.uow.batch.setdefault(PRELOADED_SAGAS, Preloaded())
        # The accounts a batch of offers names (offers.py: read_parties_ahead), shared the same way.
        self.accounts = AccountRepository(self.uow.session, self.uow.batch.setdefault(PRELOADED_ACCOUNTS, {}))
        self.contracts = ContractRepository(self.uow.session, self._seen)
        self.sagas = SagaRepository(self.uow.session, self._seen)
        self.bonuses = BonusRepository(self.uow.session)
        self.disputes = DisputeRepository(self.uow.session)
        self.upcoming = UpcomingRepository(self.uow.session)

    def event(self, data: Message, subject: str, actor: str | None = None) -> None:
        self.uow.publish(CONTRACTS_EVENTS, data, subject=subject, actor=actor)

    def ask_billing(self, data: Message, subject: str) -> None:
        self.uow.publish(BILLING_SAGA_COMMANDS, data, subject=subject)

    def ask_escrow(self, data: Message, subject: str) -> None:
        self.uow.publish(ESCROW_SAGA_COMMANDS, data, subject=subject)

    async def save(self, contract: Contract, change: str, saga: Saga | None = None) -> None:
        """Save the contract (with the saga whose step moved it, and the statement's entries of the event
        being handled: one statement) and publish the events it recorded, in this transaction; every contract
        action and money movement is activity of both its parties."""
        entries = []
        if self._entries is not None and self._entries[0] == contract.contract_id:
            entries, self._entries = self._entries[1], None
        await self.contracts.save(contract, change, self.now, saga=saga, entries=entries)
        for event in contract.pull_events():
            self.event(event, contract.contract_id)
        await self.record_activity(contract.client_id, contract.freelancer_id)

    def record_entries(self, contract_id: str, movements: list[Movement]) -> None:
        """The statement's entries of the event being handled, written with the contract's save or by
        write_entries, whichever comes first."""
        self._entries = (contract_id, movements) if movements else None

    async def write_entries(self) -> None:
        """The statement's entries no save took with it."""
        if self._entries is not None:
            contract_id, movements = self._entries
            self._entries = None
            await StatementRepository(self.uow.session).record(contract_id, movements)

    async def record_activity(self, *account_ids: str) -> None:
        """One statement for all of them, none for an account whose activity this handler saw recent enough
        (the statement would not write it either: activity only ever moves forward)."""
        resolution = activity_resolution(self.settings.account_inactive_after)
        known = self._seen.activity
        news = sorted(a for a in set(account_ids) if a not in known or activity_is_news(known[a], self.now, resolution))
        if news:
            await self.accounts.record_activity(news, self.now, resolution)
            known.update(dict.fromkeys(news, self.now))

    async def contract(self, contract_id: str) -> Contract:
        contract = await self.contracts.get(contract_id)
        if contract is None:
            raise Rejected("not_found", f"contract {contract_id} does not exist")
        return contract

    async def read_accounts(self, *account_ids: str) -> None:
        """Read these accounts (unlocked) in one round trip, for the `account` calls that follow."""
        found = await self.accounts.get_many([a for a in account_ids if a not in self._accounts])
        self._accounts.update(found)
        self._seen.activity.update({a: account.last_activity_at for a, account in found.items()})

    async def account(self, account_id: str, lock: bool = False) -> Account:
        account = None if lock else self._accounts.get(account_id)
        if account is None:
            account = await self.accounts.get(account_id, lock)
        if account is None:
            raise Rejected("not_found", f"account {account_id} does not exist")
        if not lock:
            self._accounts[account_id] = account
        self._seen.activity.setdefault(account_id, account.last_activity_at)
        return account
