"""The contracts service, assembled: what it consumes, serves, owns and schedules."""

from functools import partial
from pathlib import Path

from platform_runtime.dispatch import CommandDispatcher, EventDispatcher
from platform_runtime.http import command_status_router
from platform_runtime.service import ServiceDefinition, Subscription
from platform_schemas.commands import contracts as commands
from platform_schemas.actors import COMMAND_ROUTES
from platform_schemas.topics import (
    BILLING_EVENTS, CONTRACTS_ADMIN_COMMANDS, CONTRACTS_COMMANDS, CONTRACTS_EVENTS, ESCROW_EVENTS,
)

from .adapters.tables import metadata
from .entrypoints import http, queues_http, sagas_http, statement_http
from .service_layer import accounts, bonuses, endings, milestones, offers, statement
from .service_layer.context import Context
from .service_layer.sagas.metrics import gauge_loop
from .service_layer.sagas.replies import REPLY_HANDLERS, read_sagas_ahead
from .service_layer.timers import schedule_next_sweep, timer_handlers
from .settings import ContractsSettings

COMMANDS = {
    commands.RegisterAccount: accounts.register_account,
    commands.SuspendAccount: accounts.suspend_account,
    commands.RequestReactivation: accounts.request_reactivation,
    commands.ReactivateAccount: accounts.reactivate_account,
    commands.SendOffer: offers.send_offer,
    commands.WithdrawOffer: offers.withdraw_offer,
    commands.AcceptOffer: offers.accept_offer,
    commands.DeclineOffer: offers.decline_offer,
    commands.AddMilestone: milestones.add_milestone,
    commands.EditMilestone: milestones.edit_milestone,
    commands.RemoveMilestone: milestones.remove_milestone,
    commands.ActivateMilestone: milestones.activate_milestone,
    commands.SubmitWork: milestones.submit_work,
    commands.RequestChanges: milestones.request_changes,
    commands.ApproveMilestone: milestones.approve_milestone,
    commands.EndContract: endings.end_contract,
    commands.CancelContract: endings.cancel_contract,
    commands.RespondToRefundRequest: endings.respond_to_refund_request,
    commands.ResolveDispute: endings.resolve_dispute,
    commands.GiveBonus: bonuses.give_bonus,
}


async def context(runtime):
    """Every handler's context: this transaction's repositories and the settings."""
    return partial(Context, settings=runtime.settings)


def subscriptions(runtime) -> list[Subscription]:
    replies = EventDispatcher(statement.recording({**REPLY_HANDLERS, **bonuses.EVENT_HANDLERS}), runtime.new_context,
                              read_ahead=read_sagas_ahead)
    # Both topics know every command, so that one on the wrong topic is answered `forbidden` (not unknown).
    from_integrators, from_operators = (
        CommandDispatcher(topic, COMMANDS, CONTRACTS_EVENTS, runtime.new_context, routes=COMMAND_ROUTES,
                          read_ahead=offers.read_parties_ahead)
        for topic in (CONTRACTS_COMMANDS, CONTRACTS_ADMIN_COMMANDS))
    return [
        Subscription(CONTRACTS_COMMANDS, from_integrators.dispatch),
        Subscription(CONTRACTS_ADMIN_COMMANDS, from_operators.dispatch),
        Subscription(BILLING_EVENTS, replies.dispatch),
        Subscription(ESCROW_EVENTS, replies.dispatch),
    ]


async def on_start(runtime) -> None:
    async with runtime.new_uow() as uow:
        await schedule_next_sweep(uow, runtime.settings)
        await uow.commit()


definition = ServiceDefinition(
    name="contracts",
    metadata=metadata,
    settings_type=ContractsSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    subscriptions=subscriptions,
    context=context,
    routers=lambda runtime: [http.router(), statement_http.router(), queues_http.router(), sagas_http.router(),
                             command_status_router()],
    background=lambda runtime: [gauge_loop(runtime.session_factory, runtime.clock,
                                           runtime.settings.metrics_interval.total_seconds())],
    timers=lambda runtime: timer_handlers(runtime.settings),
    on_start=on_start,
)
