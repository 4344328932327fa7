"""Saga replies arrive as the participants' events; each is routed to the saga that asked for it."""

from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope, Message
from platform_schemas.events.billing import ChargeFailed

from ...settings import ContractsSettings
from ..accounts import count_failed_charge
from ..context import Context
from . import fund, refund, release

SAGAS = {fund.KIND: fund.REPLIES, release.KIND: release.REPLIES, refund.KIND: refund.REPLIES}
REPLY_TYPES = sorted({t for replies in SAGAS.values() for t in replies})


async def handle_reply(event: Message, type_name: str, ctx: Context) -> None:
    saga = await ctx.sagas.get(event.saga_id)
    # No saga of ours: another service's (billing's bonus batch), whose failed charges still count.
    handler = SAGAS[saga.kind].get(type_name) if saga else None
    if handler:
        await handler(saga, event, ctx)
    if isinstance(event, ChargeFailed):
        await count_failed_charge(ctx, event)


def reply_handlers(settings: ContractsSettings):
    async def route(event: Message, envelope: Envelope, uow: UnitOfWork) -> None:
        await handle_reply(event, envelope.type, Context(uow, settings))

    return {t: route for t in REPLY_TYPES}
