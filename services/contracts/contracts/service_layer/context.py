"""What every contracts handler works with: the unit of work, its repositories, the settings."""

from dataclasses import dataclass, field
from datetime import datetime

from platform_runtime.errors import Rejected
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope, Message
from platform_schemas.topics import BILLING_SAGA_COMMANDS, CONTRACTS_EVENTS, ESCROW_SAGA_COMMANDS

from ..adapters.repositories import AccountRepository, ContractRepository, SagaRepository
from ..domain.accounts import Account, activity_resolution
from ..domain.contracts import Contract
from ..settings import ContractsSettings


@dataclass
class Context:
    uow: UnitOfWork
    settings: ContractsSettings
    accounts: AccountRepository = field(init=False)
    contracts: ContractRepository = field(init=False)
    sagas: SagaRepository = field(init=False)

    def __post_init__(self) -> None:
        self.accounts = AccountRepository(self.uow.session)
        self.contracts = ContractRepository(self.uow.session)
        self.sagas = SagaRepository(self.uow.session)

    @property
    def now(self) -> datetime:
        return self.uow.clock.now()

    def event(self, data: Message, subject: str, actor: str | None = None) -> None:
        self.uow.publish(CONTRACTS_EVENTS, data, subject=subject, actor=actor)

    def ask_billing(self, data: Message, subject: str) -> None:
        self.uow.publish(BILLING_SAGA_COMMANDS, data, subject=subject)

    def ask_escrow(self, data: Message, subject: str) -> None:
        self.uow.publish(ESCROW_SAGA_COMMANDS, data, subject=subject)

    async def save(self, contract: Contract, event: str) -> None:
        """Save the contract; every contract action and money movement is activity of both its parties."""
        await self.contracts.save(contract, event, self.now)
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

    async def complete(self, command_id: str | None, outcome: str, **details: object) -> None:
        if command_id:
            await self.uow.set_command_status(command_id, "completed", {"type": outcome, **details})


def command_context(settings: ContractsSettings):
    """Adapt a `(cmd, ctx)` handler to the runtime's `(cmd, envelope, uow)` signature."""

    def bind(handler):
        async def handle(cmd: Message, envelope: Envelope, uow: UnitOfWork) -> None:
            await handler(cmd, envelope, Context(uow, settings))

        handle.__name__ = handler.__name__
        return handle

    return bind
