"""The escrow service, assembled: what it consumes, serves and owns."""

from datetime import timedelta
from functools import partial
from pathlib import Path

from platform_runtime.dispatch import CommandDispatcher, EventDispatcher
from platform_runtime.http import command_status_router
from platform_runtime.service import ServiceDefinition, Subscription
from platform_runtime.settings import Duration, ServiceSettings
from platform_schemas.topics import BILLING_EVENTS, ESCROW_EVENTS, ESCROW_SAGA_COMMANDS

from .adapters.tables import metadata
from .entrypoints import http
from .service_layer import bonuses, earnings, handlers as steps, past_due
from .service_layer.context import Context
from .service_layer.failures import failure_reply
from .service_layer.hold_on_charge import billing_events


class EscrowSettings(ServiceSettings):
    http_port: int = 8002
    # The earnings security period: a release or bonus is pending this long, then available.
    earnings_pending_for: Duration = timedelta(days=5)


async def context(runtime):
    """Every handler's context: this transaction's ledger repositories and the security period."""
    return partial(Context, pending_for=runtime.settings.earnings_pending_for)


def subscriptions(runtime) -> list[Subscription]:
    participant = CommandDispatcher(ESCROW_SAGA_COMMANDS, {**steps.HANDLERS, **bonuses.HANDLERS}, ESCROW_EVENTS,
                                    runtime.new_context, failure_reply)
    # billing.events: a fund saga's ClientCharged is its hold step, taken at once (hold_on_charge.py)
    billing_facts = billing_events(participant, EventDispatcher(past_due.EVENT_HANDLERS, runtime.new_context))
    return [Subscription(ESCROW_SAGA_COMMANDS, participant.dispatch, participant.give_up),
            Subscription(BILLING_EVENTS, billing_facts.dispatch, billing_facts.give_up)]


definition = ServiceDefinition(
    name="escrow",
    metadata=metadata,
    settings_type=EscrowSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    subscriptions=subscriptions,
    context=context,
    routers=lambda runtime: [http.router(), command_status_router()],
    timers=lambda runtime: earnings.timer_handlers(),
)
