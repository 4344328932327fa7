"""Escrow holds a fund saga's charge when it reads billing's ClientCharged, without waiting for contracts' HoldEscrow.

The hold is the saga's own "hold" step (`platform_schemas.choreography.hold_for`): the same step id as the HoldEscrow
contracts sends when the step's deadline passes without an answer. It is handled by the participant's dispatcher as
if that command had come, under the event's id: claimed in the inbox once, answered with EscrowFunded or the step's
typed failure (EscrowHoldRejected, kept under the step id, so a later HoldEscrow gets the same answer), and answered
as failed by `give_up` when it cannot be handled, before the event is dead-lettered. No step ends in silence: the
orchestrator's deadline still stands behind it. Billing's other events go to `others`.
"""

from dataclasses import dataclass

from platform_runtime.dispatch import CommandDispatcher, EventDispatcher
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope, dataschema_of, parse_dataschema, registry
from platform_schemas.choreography import hold_for
from platform_schemas.commands.saga import HoldEscrow
from platform_schemas.events.billing import ClientCharged
from pydantic import ValidationError

CHARGED = ClientCharged.__name__
_HOLDS = "hold_on_charge.holds"  # UnitOfWork.batch's key: event id -> (the event, its hold)
_CLAIMED = "hold_on_charge.claimed"  # and the ids of the holds claimed ahead


@dataclass
class HoldOnCharge:
    steps: CommandDispatcher  # the saga participant's, on escrow.saga-commands
    others: EventDispatcher  # billing's other facts escrow reads

    def handles(self, event_type: str) -> bool:
        """What the consumer parses: ClientCharged, and what `others` handles; the rest is skipped unparsed."""
        return event_type == CHARGED or self.others.handles(event_type)

    async def prefetch(self, envelopes: list[Envelope], uow: UnitOfWork) -> None:
        """What the consumer calls for a batch of two or more: its holds claimed at once (`_claim_ahead`)."""
        await self._claim_ahead([hold for e in envelopes if (hold := self._hold(e, uow)) is not None], uow)
        if self.others.prefetch is not None:
            await self.others.prefetch([e for e in envelopes if e.type != CHARGED], uow)

    async def dispatch(self, envelope: Envelope, uow: UnitOfWork) -> None:
        hold = self._hold(envelope, uow)
        if hold is not None:
            await self._claim_ahead([hold], uow)  # a batch of one, which has no prefetch
            await self.steps.dispatch(hold, uow)
        elif envelope.type != CHARGED:
            await self.others.dispatch(envelope, uow)

    async def give_up(self, envelope: Envelope, error: BaseException, uow: UnitOfWork) -> bool:
        hold = as_hold(envelope)
        return hold is not None and await self.steps.give_up(hold, error, uow)

    async def _claim_ahead(self, holds: list[Envelope], uow: UnitOfWork) -> None:
        """Holds claimed in one statement with the answers kept for their steps, as the participant's own topic's
        commands are (the consumer claims none here: billing's other events are claimed as `seen`, these as commands).
        Each hold once; none on a try with a savepoint per message, where each claim belongs in its savepoint."""
        claimed: set[str] = uow.batch.setdefault(_CLAIMED, set())
        fresh = [hold for hold in holds if hold.id not in claimed]
        if fresh and not uow.savepoint_per_message:
            claimed.update(hold.id for hold in fresh)
            await uow.claim_all(fresh, self.steps.claim_status, self.steps.failed_steps_of(fresh, uow))

    @staticmethod
    def _hold(envelope: Envelope, uow: UnitOfWork) -> Envelope | None:
        """The hold of a ClientCharged, made once per batch: the participant finds its parse by the same envelope."""
        made: dict[str, tuple[Envelope, Envelope | None]] = uow.batch.setdefault(_HOLDS, {})
        earlier = made.get(envelope.id)
        if earlier is None or earlier[0] is not envelope:
            made[envelope.id] = earlier = (envelope, as_hold(envelope))
        return earlier[1]


def as_hold(envelope: Envelope) -> Envelope | None:
    """A fund saga's ClientCharged as the hold step it implies, under the event's own id (its inbox key, and the
    cause of the answer); None for any other event, a charge that holds nothing, or one that does not parse (the
    orchestrator's HoldEscrow, after the deadline, then meets the step's checks)."""
    if envelope.type != CHARGED:
        return None
    try:
        model = registry.model_for(CHARGED, parse_dataschema(envelope.dataschema))
        hold = hold_for(model.model_validate(envelope.data)) if model is not None else None
    except (ValueError, ValidationError):
        return None
    if hold is None:
        return None
    return envelope.model_copy(update={
        "type": HoldEscrow.__name__, "dataschema": dataschema_of(HoldEscrow.__name__, HoldEscrow.VERSION),
        "data": hold.model_dump(mode="json", exclude_none=True)})
