"""What every billing handler works with: the unit of work, the settings and the payment gateway port."""

from dataclasses import dataclass, field

from platform_runtime.context import HandlerContext
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope

from ..domain.gateway import PaymentGateway
from ..settings import BillingSettings


@dataclass
class Context(HandlerContext):
    settings: BillingSettings = field(kw_only=True)
    gateway: PaymentGateway = field(kw_only=True)


@dataclass
class BillingContexts:
    """Built once at start (bootstrap): the ports every handler's context shares."""

    settings: BillingSettings
    gateway: PaymentGateway

    def __call__(self, uow: UnitOfWork, envelope: Envelope | None = None) -> Context:
        return Context(uow, envelope, settings=self.settings, gateway=self.gateway)
