"""The contracts service, assembled: what it consumes, serves, owns and schedules."""

from pathlib import Path

from platform_runtime.dispatch import CommandDispatcher, EventDispatcher
from platform_runtime.http import command_status_router
from platform_runtime.service import ServiceDefinition, Subscription
from platform_schemas.topics import BILLING_EVENTS, CONTRACTS_COMMANDS, CONTRACTS_EVENTS, ESCROW_EVENTS

from .adapters.tables import metadata
from .entrypoints import http
from .service_layer import accounts, bonuses, endings, milestones, offers
from .service_layer.context import command_context
from .service_layer.sagas.replies import reply_handlers
from .service_layer.timers import schedule_next_sweep, timer_handlers
from .settings import ContractsSettings

COMMANDS = {
    "RegisterAccount": accounts.register_account,
    "SuspendAccount": accounts.suspend_account,
    "RequestReactivation": accounts.request_reactivation,
    "ReactivateAccount": accounts.reactivate_account,
    "SendOffer": offers.send_offer,
    "WithdrawOffer": offers.withdraw_offer,
    "AcceptOffer": offers.accept_offer,
    "DeclineOffer": offers.decline_offer,
    "AddMilestone": milestones.add_milestone,
    "EditMilestone": milestones.edit_milestone,
    "RemoveMilestone": milestones.remove_milestone,
    "ActivateMilestone": milestones.activate_milestone,
    "SubmitWork": milestones.submit_work,
    "RequestChanges": milestones.request_changes,
    "ApproveMilestone": milestones.approve_milestone,
    "EndContract": endings.end_contract,
    "CancelContract": endings.cancel_contract,
    "RespondToRefundRequest": endings.respond_to_refund_request,
    "ResolveDispute": endings.resolve_dispute,
    "GiveBonus": bonuses.give_bonus,
}


def subscriptions(runtime) -> list[Subscription]:
    bind = command_context(runtime.settings)
    commands = {name: bind(handler) for name, handler in COMMANDS.items()}
    bonus_results = {name: bind(handler) for name, handler in bonuses.EVENT_HANDLERS.items()}
    replies = EventDispatcher({**reply_handlers(runtime.settings), **bonus_results})
    return [
        Subscription(CONTRACTS_COMMANDS, CommandDispatcher(CONTRACTS_COMMANDS, commands, CONTRACTS_EVENTS).dispatch),
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
    routers=lambda runtime: [http.router(), command_status_router()],
    timers=lambda runtime: timer_handlers(runtime.settings),
    on_start=on_start,
)
