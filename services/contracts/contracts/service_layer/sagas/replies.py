"""Saga replies arrive as the participants' events; each is routed to the saga that asked for it."""

from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope, Message

from ...settings import ContractsSettings
from ..context import Context
from . import fund, refund, release

SAGAS = {fund.KIND: fund.REPLIES, release.KIND: release.REPLIES, refund.KIND: refund.REPLIES}
REPLY_TYPES = sorted({t for replies in SAGAS.values() for t in replies})


def reply_handlers(settings: ContractsSettings):
    async def route(event: Message, envelope: Envelope, uow: UnitOfWork) -> None:
        ctx = Context(uow, settings)
        saga = await ctx.sagas.get(event.saga_id)
        if saga is None:  # another service's saga (billing's bonus batch): not ours
            return
        handler = SAGAS[saga.kind].get(envelope.type)
        if handler:
            await handler(saga, event, ctx)

    return {t: route for t in REPLY_TYPES}
