"""What every contracts handler works with: the unit of work, its repositories, the settings."""

from dataclasses import dataclass, field

from platform_runtime.context import HandlerContext
from platform_runtime.errors import Rejected
from platform_schemas import Message
from platform_schemas.topics import BILLING_SAGA_COMMANDS, CONTRACTS_EVENTS, ESCROW_SAGA_COMMANDS

from ..adapters.bonus_repository import BonusRepository
from ..adapters.queues import DisputeRepository
from ..adapters.repositories import AccountRepository, ContractRepository, SagaRepository
from ..adapters.upcoming_repository import UpcomingRepository
from ..domain.accounts import Account, activity_resolution
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

    def __post_init__(self) -> None:
        self.accounts = AccountRepository(self.uow.session)
        self.contracts = ContractRepository(self.uow.session)
        self.sagas = SagaRepository(self.uow.session)
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
        resolution = activity_resolution(self.settings.account_inactive_after)
        for account_id in sorted(set(account_ids)):  # one lock order, so two transactions never deadlock here
            await self.accounts.record_activity(account_id, self.now, resolution)

    async def contract(self, contract_id: str) -> Contract:
        contract = await self.contracts.get(contract_id)
        if contract is None:
            raise Rejected("not_found", f"contract {contract_id} does not exist")
        return contract

    async def account(self, account_id: str, lock: bool = False) -> Account:
        account = await self.accounts.get(account_id, lock)
        if account is None:
            raise Rejected("not_found", f"account {account_id} does not exist")
        return account
