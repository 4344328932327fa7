"""What every contracts handler works with: the unit of work, its repositories, the settings."""

from dataclasses import dataclass, field

from platform_runtime.context import HandlerContext
from platform_runtime.errors import Rejected
from platform_schemas import Message
from platform_schemas.topics import BILLING_SAGA_COMMANDS, CONTRACTS_EVENTS, ESCROW_SAGA_COMMANDS

from ..adapters.bonus_repository import BonusRepository
from ..adapters.queues import DisputeRepository
from ..adapters.repositories import AccountRepository, ContractRepository, SagaRepository, Seen
from ..adapters.upcoming_repository import UpcomingRepository
from ..domain.accounts import Account, activity_is_news, activity_resolution
from ..domain.contracts import Contract
from ..settings import ContractsSettings


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

    def __post_init__(self) -> None:
        self.accounts = AccountRepository(self.uow.session)
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

    async def save(self, contract: Contract, change: str) -> None:
        """Save the contract and publish the events it recorded, in this transaction; every contract action
        and money movement is activity of both its parties."""
        await self.contracts.save(contract, change, self.now)
        for event in contract.pull_events():
            self.event(event, contract.contract_id)
        await self.record_activity(contract.client_id, contract.freelancer_id)

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
