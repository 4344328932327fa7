"""Billing's word on a client's past-due balance, kept to show it with the balances (GET /accounts/{id}/balance)."""

from platform_runtime.logging import get_logger
from platform_schemas.events.billing import PastDueBalanceChanged

from .context import Context

log = get_logger(__name__)


async def on_past_due_changed(event: PastDueBalanceChanged, ctx: Context) -> None:
    """Kept unless a newer version of the balance came first (events of one client may arrive late)."""
    if not await ctx.earnings.set_past_due(event.client_id, event.currency, event.amount, event.version):
        log.info("past_due_balance_stale_ignored", client_id=event.client_id, currency=event.currency,
                 amount=event.amount, version=event.version)


EVENT_HANDLERS = {PastDueBalanceChanged: on_past_due_changed}
