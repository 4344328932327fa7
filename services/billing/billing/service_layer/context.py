"""What every billing handler works with: the unit of work, billing's repositories, the settings and the
payment gateway port (used only by the gateway loop and the bonus batch: handlers record work, never call)."""

from dataclasses import dataclass, field

from platform_runtime.context import HandlerContext
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope, Message
from platform_schemas.topics import BILLING_EVENTS

from ..adapters import charges_together
from ..adapters.bonus_repository import BonusRepository
from ..adapters.gateway_work_repository import GatewayWork
from ..adapters.repository import BillingRepository
from ..domain.gateway import PaymentGateway
from ..settings import BillingSettings


@dataclass
class Context(HandlerContext):
    settings: BillingSettings = field(kw_only=True)
    gateway: PaymentGateway = field(kw_only=True)
    billing: BillingRepository = field(init=False)
    work: GatewayWork = field(init=False)
    bonuses: BonusRepository = field(init=False)

    def __post_init__(self) -> None:
        self.billing = BillingRepository(self.uow.session)
        self.work = GatewayWork(self.uow.session, self.uow.batch.get(charges_together.BATCH_KEY))
        self.bonuses = BonusRepository(self.uow.session)

    def event(self, data: Message, subject: str) -> None:
        self.uow.publish(BILLING_EVENTS, data, subject=subject)


@dataclass
class BillingContexts:
    """Built once at start (bootstrap): the ports every handler's context shares."""

    settings: BillingSettings
    gateway: PaymentGateway

    def __call__(self, uow: UnitOfWork, envelope: Envelope | None = None) -> Context:
        return Context(uow, envelope, settings=self.settings, gateway=self.gateway)
