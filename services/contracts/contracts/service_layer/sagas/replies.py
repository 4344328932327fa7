"""Saga replies arrive as the participants' events; each is routed to the saga that asked for it."""

from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope, Message
from platform_schemas.events.billing import ChargeFailed

from ..accounts import count_failed_charge
from ...adapters.repositories import SagaRepository
from ..context import PRELOADED_SAGAS, Context
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
_REPLY_NAMES = {t.__name__ for t in REPLY_TYPES}


async def read_sagas_ahead(envelopes: list[Envelope], uow: UnitOfWork) -> None:
    """A batch's replies: their sagas, each locked with its contract, and the contracts' milestones, in two
    statements for the batch instead of two per reply (each handler's `ctx.sagas.get` takes its own). The ids
    are read before the data is validated, only to be looked up: a reply that fails validation still fails."""
    saga_ids = [e.data["saga_id"] for e in envelopes
                if e.type in _REPLY_NAMES and isinstance(e.data.get("saga_id"), str)]
    if len(saga_ids) > 1:
        uow.batch[PRELOADED_SAGAS] = await SagaRepository(uow.session).preload(saga_ids)
