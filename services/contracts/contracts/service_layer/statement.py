"""Contracts records every money movement escrow reports on a contract, for the contract's statement."""

from datetime import datetime

from platform_runtime.keys import compose
from platform_schemas import Message
from platform_schemas.events.escrow import BonusPosted, EarningAvailable, EscrowFunded, EscrowRefunded, EscrowReleased

from ..domain.statement import AVAILABLE, FUNDED, REFUNDED, RELEASED, Movement
from .context import Context


def movements(event: Message, at: datetime) -> list[Movement]:
    """What the event moved, per item; the entry ids repeat for a replayed event, so it counts once. They are
    composed, never joined: a caller's bonus id may look like a hold's step id followed by a milestone id."""
    match event:
        case EscrowFunded():
            return [Movement(compose("hold", event.hold_id, m.milestone_id, FUNDED), "milestone", m.milestone_id, FUNDED,
                             m.amount, at) for m in event.milestones]
        case EscrowReleased():
            return [Movement(compose("release", event.release_id, RELEASED), "milestone", event.milestone_id, RELEASED,
                             event.amount, at, event.available_at)]
        case EscrowRefunded():
            return [Movement(compose("refund", event.refund_id, REFUNDED), "milestone", event.milestone_id, REFUNDED,
                             event.amount, at)]
        case BonusPosted():  # charged to the client and credited to the freelancer in one ledger transaction
            return [Movement(compose("bonus", event.bonus_id, FUNDED), "bonus", event.bonus_id, FUNDED, event.amount, at),
                    Movement(compose("bonus", event.bonus_id, RELEASED), "bonus", event.bonus_id, RELEASED, event.amount, at,
                             event.available_at)]
        case EarningAvailable():
            item = ("bonus", event.bonus_id) if event.bonus_id else ("milestone", event.milestone_id)
            return [Movement(compose(item[0], event.earning_id, AVAILABLE), *item, AVAILABLE, event.amount, at)]
    return []


RECORDED = (EscrowFunded, EscrowReleased, EscrowRefunded, BonusPosted, EarningAvailable)


def recording(handlers: dict) -> dict:
    """The event handlers, each escrow event of RECORDED also written to the statement: with the contract
    when the handler saves it (one statement for both), else on its own."""
    def both(inner):
        async def handle(event: Message, ctx: Context) -> None:
            ctx.record_entries(event.contract_id, movements(event, ctx.envelope.time))
            if inner:
                await inner(event, ctx)
            await ctx.write_entries()
        return handle

    return {**handlers, **{t: both(handlers.get(t)) for t in RECORDED}}
