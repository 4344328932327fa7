"""Saga replies arrive as the participants' events; each is routed to the saga that asked for it."""

from platform_schemas import Message
from platform_schemas.events.billing import ChargeFailed

from ..accounts import count_failed_charge
from ..context import Context
from . import fund, refund, release

SAGAS = {fund.KIND: fund.REPLIES, release.KIND: release.REPLIES, refund.KIND: refund.REPLIES}
REPLY_TYPES = {t for replies in SAGAS.values() for t in replies}


async def handle_reply(event: Message, ctx: Context) -> None:
    saga = await ctx.sagas.get(event.saga_id)
    # No saga of ours: another service's (billing's bonus batch), whose failed charges still count.
    handler = SAGAS[saga.kind].get(type(event)) if saga else None
    if handler:
        await handler(saga, event, ctx)
    if isinstance(event, ChargeFailed):
        await count_failed_charge(ctx, event)


REPLY_HANDLERS = {t: handle_reply for t in REPLY_TYPES}
