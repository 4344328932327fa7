"""The notifications service, assembled: what it consumes, serves, and the email delivery loop it runs."""

from functools import partial
from pathlib import Path

from platform_runtime.dispatch import EventDispatcher
from platform_runtime.service import ServiceDefinition, Subscription
from platform_schemas.topics import BILLING_EVENTS, CONTRACTS_EVENTS

from .adapters.repository import EMAILS_DUE_CHANNEL, NotificationRepository
from .adapters.smtp import SmtpSender
from .adapters.tables import metadata
from .adapters.templates import Templates
from platform_runtime.listener import Listener
from .domain import routing
from .domain.delivery import RetryPolicy
from .entrypoints import http
from .service_layer.delivery import EmailDelivery
from .service_layer.context import Context
from .service_layer.handlers import HANDLERS, read_ahead
from .settings import NotificationsSettings


async def context(runtime):
    """Every handler's context: this transaction's repository, the templates (loaded once), the names' wait."""
    return partial(Context, templates=Templates(runtime.settings.templates_dir),
                   names_wait=runtime.settings.names_wait)


def subscriptions(runtime) -> list[Subscription]:
    # A contract's event may come before the AccountRegistered naming its party (keyed by the account: another
    # partition, in this batch or a later one): its notification then waits for the name (domain/names.py).
    events = EventDispatcher(HANDLERS, runtime.new_context, read_ahead=read_ahead)
    return [Subscription(CONTRACTS_EVENTS, events.dispatch), Subscription(BILLING_EVENTS, events.dispatch)]


def background(runtime) -> list:
    settings: NotificationsSettings = runtime.settings
    delivery = EmailDelivery(
        runtime.new_uow,
        SmtpSender(settings.smtp_host, settings.smtp_port, settings.smtp_timeout.total_seconds()),
        RetryPolicy(settings.delivery_max_attempts, settings.delivery_retry_backoff,
                    settings.delivery_retry_backoff_max),
        runtime.clock, settings.mail_from, settings.delivery_workers,
        settings.delivery_poll_interval.total_seconds(), settings.delivery_batch_size)
    # Woken when an email is inserted (by any instance), rather than polling fast for it.
    emails_due = Listener(settings.database_url, EMAILS_DUE_CHANNEL, delivery.emails_due)
    return [delivery.run, emails_due.run]


async def on_start(runtime) -> None:
    """The administrators are a recipient like any account; their address comes from ADMIN_EMAIL."""
    async with runtime.new_uow() as uow:
        await NotificationRepository(uow.session).save_account(
            routing.ADMINISTRATORS_ID, "admin", "Administrators", runtime.settings.admin_email)
        await uow.commit()


definition = ServiceDefinition(
    name="notifications",
    metadata=metadata,
    settings_type=NotificationsSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    subscriptions=subscriptions,
    context=context,
    routers=lambda runtime: [http.router()],
    background=background,
    on_start=on_start,
)
