"""Billing's word on a client's past-due balance, kept to show it with the balances (GET /accounts/{id}/balance)."""

from platform_schemas.events.billing import PastDueBalanceChanged

from .context import Context


async def on_past_due_changed(event: PastDueBalanceChanged, ctx: Context) -> None:
    await ctx.earnings.set_past_due(event.client_id, event.currency, event.amount)


EVENT_HANDLERS = {PastDueBalanceChanged: on_past_due_changed}
