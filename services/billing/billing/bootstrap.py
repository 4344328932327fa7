"""The billing service, assembled: what it consumes, serves and owns."""

from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from platform_runtime.dispatch import CommandDispatcher, EventDispatcher
from platform_runtime.http import command_status_router
from platform_runtime.service import ServiceDefinition, Subscription
from platform_runtime.settings import ServiceSettings
from platform_schemas.topics import BILLING_COMMANDS, BILLING_EVENTS, BILLING_SAGA_COMMANDS, ESCROW_EVENTS

from .adapters.gateway_simulator import SimulatedGateway
from .adapters.tables import metadata
from .entrypoints import http
from .service_layer import handlers


class BillingSettings(ServiceSettings):
    http_port: int = 8003
    gateway_database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:55432/gateway"
    gateway_attempts: int = 4


def subscriptions(runtime) -> list[Subscription]:
    steps = handlers.SagaSteps(runtime.extras["gateway"], attempts=runtime.settings.gateway_attempts)
    saga_handlers = {"ChargeClient": steps.charge_client, "RefundCharge": steps.refund_charge}
    return [
        Subscription(BILLING_COMMANDS, CommandDispatcher(BILLING_COMMANDS, handlers.COMMANDS, BILLING_EVENTS).dispatch),
        Subscription(BILLING_SAGA_COMMANDS,
                     CommandDispatcher(BILLING_SAGA_COMMANDS, saga_handlers, BILLING_EVENTS).dispatch),
        Subscription(ESCROW_EVENTS, EventDispatcher({"EscrowReleased": handlers.on_escrow_released}).dispatch),
    ]


async def on_start(runtime) -> None:
    gateway = SimulatedGateway(create_async_engine(runtime.settings.gateway_database_url, pool_size=5))
    await gateway.create_tables()
    runtime.extras["gateway"] = gateway


definition = ServiceDefinition(
    name="billing",
    metadata=metadata,
    settings_type=BillingSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    subscriptions=subscriptions,
    routers=lambda runtime: [http.router(), command_status_router()],
    on_start=on_start,
)
