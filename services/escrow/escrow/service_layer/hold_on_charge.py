"""Escrow holds a fund saga's charge when it reads billing's ClientCharged, without waiting for contracts' HoldEscrow.

The hold is the saga's own "hold" step (`platform_schemas.choreography.hold_for`): the same step id as the HoldEscrow
contracts sends when the step's deadline passes without an answer. The runtime's `EventsAsSteps` hands it to escrow's
participant dispatcher as that command, under the event's id: claimed once, answered with EscrowFunded or the step's
typed failure (EscrowHoldRejected, kept under the step id, so a later HoldEscrow gets the same answer), and answered
as failed before the event is dead-lettered. No step ends in silence: the orchestrator's deadline still stands
behind it.
"""

from platform_runtime.dispatch import CommandDispatcher, EventDispatcher, EventsAsSteps
from platform_schemas import Envelope, dataschema_of, parse_dataschema, registry
from platform_schemas.choreography import hold_for
from platform_schemas.commands.saga import HoldEscrow
from platform_schemas.events.billing import ClientCharged
from pydantic import ValidationError

CHARGED = ClientCharged.__name__


def billing_events(participant: CommandDispatcher, others: EventDispatcher) -> EventsAsSteps:
    """Escrow's dispatcher of billing.events: a fund saga's ClientCharged is its hold; `others` take the rest."""
    return EventsAsSteps(participant, others, as_hold, frozenset({CHARGED}))


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
