"""The billing service, assembled: what it consumes, serves, owns and schedules."""

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from platform_runtime.dispatch import CommandDispatcher, EventDispatcher
from platform_runtime.http import command_status_router
from platform_runtime.service import ServiceDefinition, Subscription
from platform_schemas.actors import COMMAND_ROUTES
from platform_schemas.topics import (
    BILLING_ADMIN_COMMANDS, BILLING_COMMANDS, BILLING_EVENTS, BILLING_SAGA_COMMANDS, CONTRACTS_EVENTS, ESCROW_EVENTS,
)

from .adapters.gateway_simulator import SimulatedGateway
from .adapters.tables import metadata
from .adapters.wakeup import CHANNEL, CHARGE_RECORDED, Wakeup
from .entrypoints import bonus_http, gateway_http, http
from .service_layer import bonus_batch, handlers
from .service_layer.bonus_batch_runner import BonusBatchRunner
from .service_layer.bonus_progress import ProgressCounts
from .service_layer.context import BillingContexts
from .service_layer.failures import failure_reply
from .service_layer.gateway_loop import GatewayLoop
from .settings import BillingSettings, GatewayMigrationSettings, ShiftedClock, retry_policy


async def context(runtime) -> BillingContexts:
    """Every handler's context: billing's repositories, the settings and the payment gateway, opened once.
    The gateway's tables are there already (`billing migrate`): the service's role may not create any."""
    gateway = SimulatedGateway(create_async_engine(runtime.settings.gateway_database_url, pool_size=5,
                                                  hide_parameters=True))
    return BillingContexts(runtime.settings, gateway)


def migrate_gateway() -> None:
    """The simulator's tables, made by the gateway database's owner role (a real gateway needs none)."""

    async def create() -> None:
        engine = create_async_engine(GatewayMigrationSettings().url)
        try:
            await SimulatedGateway(engine).create_tables()
        finally:
            await engine.dispose()

    asyncio.run(create())


def subscriptions(runtime) -> list[Subscription]:
    contexts = runtime.new_context
    commands = {**handlers.COMMANDS, **bonus_batch.COMMANDS}
    escrow_events = {**handlers.ESCROW_EVENT_HANDLERS, **bonus_batch.ESCROW_EVENT_HANDLERS}
    participant = CommandDispatcher(BILLING_SAGA_COMMANDS, handlers.SAGA_STEPS, BILLING_EVENTS, contexts,
                                    failure_reply, read_ahead=handlers.read_primary_methods_ahead)
    # Both topics know every command, so that one on the wrong topic is answered `forbidden` (not unknown).
    from_integrators, from_operators = (
        CommandDispatcher(topic, commands, BILLING_EVENTS, contexts, routes=COMMAND_ROUTES)
        for topic in (BILLING_COMMANDS, BILLING_ADMIN_COMMANDS))
    return [
        Subscription(BILLING_COMMANDS, from_integrators.dispatch),
        Subscription(BILLING_ADMIN_COMMANDS, from_operators.dispatch),
        Subscription(BILLING_SAGA_COMMANDS, participant.dispatch, participant.give_up),
        Subscription(ESCROW_EVENTS, EventDispatcher(escrow_events, contexts).dispatch),
        Subscription(CONTRACTS_EVENTS, EventDispatcher({**handlers.CONTRACTS_EVENT_HANDLERS,
                                                        **bonus_batch.CONTRACTS_EVENT_HANDLERS}, contexts).dispatch),
    ]


async def on_start(runtime) -> None:
    if runtime.settings.clock_offset:
        runtime.clock = ShiftedClock(runtime.clock, runtime.settings.clock_offset)
    async with runtime.new_uow() as uow:
        await bonus_batch.schedule_next_batch(uow, runtime.settings.bonus_batch_at)
        await uow.commit()


def background(runtime) -> list:
    """The bonus batch's loop and the gateway loop, in every instance; both call the gateway by one policy."""
    settings, contexts = runtime.settings, runtime.new_context
    gateway_loop = GatewayLoop(runtime.new_uow, contexts, contexts.gateway, settings, retry_policy(settings),
                               Wakeup(settings.database_url, CHANNEL, routine=CHARGE_RECORDED))
    return [BonusBatchRunner(runtime.new_uow, contexts.gateway, settings, retry_policy(settings),
                             bonus_progress(runtime)).run,
            gateway_loop.run]


def bonus_progress(runtime) -> ProgressCounts:
    """One count of a running batch for the runner's log line and GET /bonus-batches/{date}: each with its own, the
    benchmark's batch of 100,000 was counted 98 times (4.2 s of the database's time, measured). A read gets a count
    at most 0.1 s old where it is cheap (a small batch moves fast: a reader sees it move); a big batch's count is
    made at most every ten times its cost whoever asks (bonus_progress.py)."""
    return runtime.shared.setdefault("bonus_progress", ProgressCounts(min_age=0.1))


definition = ServiceDefinition(
    name="billing",
    metadata=metadata,
    settings_type=BillingSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    subscriptions=subscriptions,
    context=context,
    routers=lambda runtime: [http.router(), bonus_http.router(bonus_progress(runtime)), gateway_http.router(), command_status_router()],
    timers=lambda runtime: bonus_batch.timer_handlers(runtime.settings),
    background=background,
    on_start=on_start,
    after_migrate=migrate_gateway,
)
