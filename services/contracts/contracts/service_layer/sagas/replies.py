"""Saga replies arrive as the participants' events; each is routed to the saga that asked for it."""

from platform_schemas import Message
from platform_schemas.events.billing import ChargeFailed

from ..accounts import count_failed_charge
from ..context import Context
from . import orchestrator
from .fund import FUND
from .refund import REFUND
from .release import RELEASE

SAGAS = {table.kind: table for table in (FUND, RELEASE, REFUND)}
REPLY_TYPES = {t for table in SAGAS.values() for t in table.reply_types}


async def handle_reply(event: Message, ctx: Context) -> None:
    saga = await ctx.sagas.get(event.saga_id)
    # No saga of ours: another service's (billing's bonus batch), whose failed charges still count.
    if saga is not None:
        await orchestrator.on_reply(SAGAS[saga.kind], saga, event, ctx)
    if isinstance(event, ChargeFailed):
        await count_failed_charge(ctx, event)


async def on_step_deadline(payload: dict, ctx: Context) -> None:
    await orchestrator.on_deadline(SAGAS, payload, ctx)


REPLY_HANDLERS = {t: handle_reply for t in REPLY_TYPES}
