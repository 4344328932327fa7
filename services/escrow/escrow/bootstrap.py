"""The escrow service, assembled: what it consumes, serves and owns."""

from pathlib import Path

from platform_runtime.dispatch import CommandDispatcher
from platform_runtime.http import command_status_router
from platform_runtime.service import ServiceDefinition, Subscription
from platform_runtime.settings import ServiceSettings
from platform_schemas.topics import ESCROW_EVENTS, ESCROW_SAGA_COMMANDS

from .adapters.tables import metadata
from .entrypoints import http
from .service_layer import bonuses
from .service_layer.handlers import HANDLERS


class EscrowSettings(ServiceSettings):
    http_port: int = 8002


def subscriptions(runtime) -> list[Subscription]:
    handlers = {**HANDLERS, **bonuses.HANDLERS}
    return [Subscription(ESCROW_SAGA_COMMANDS,
                         CommandDispatcher(ESCROW_SAGA_COMMANDS, handlers, ESCROW_EVENTS).dispatch)]


definition = ServiceDefinition(
    name="escrow",
    metadata=metadata,
    settings_type=EscrowSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    subscriptions=subscriptions,
    routers=lambda runtime: [http.router(), command_status_router()],
)
