"""A saga step a participant takes on another participant's answer, without waiting for the orchestrator.

The fund saga's hold is one: escrow holds a fund saga's charge as soon as billing's `ClientCharged` says the client
was charged, instead of waiting for contracts to read that answer and send `HoldEscrow` (one Kafka hop and one
transaction of contracts fewer on the path of every offer). The hold escrow takes is the one the orchestrator would
ask for, with the same step id, so escrow does it once whichever comes first. Contracts still records every answer
and keeps every failure: it sends `HoldEscrow` itself only when no answer came by the step's deadline, and it
compensates a hold escrow refuses (README, "The hold is taken by escrow on the charge").
"""

from pydantic import ValidationError

from .commands.saga import HoldEscrow
from .events.billing import ClientCharged

HOLD_STEP = "hold"


def step_id(saga_id: str, step: str) -> str:
    """A saga step's id, the participant's idempotency key: the same on every send of the step."""
    return f"{saga_id}:{step}"


def hold_for(charged: ClientCharged) -> HoldEscrow | None:
    """The hold a fund saga's charge asks of escrow; None for a charge that holds nothing (a bonus batch's, whose
    bonuses escrow posts on `PostBonuses`) or whose saga id makes no valid step id (left to the orchestrator)."""
    if charged.purpose != "fixed_price" or not charged.milestones:
        return None
    try:
        return HoldEscrow(hold_id=step_id(charged.saga_id, HOLD_STEP), saga_id=charged.saga_id,
                          charge_id=charged.charge_id, contract_id=charged.contract_id, client_id=charged.client_id,
                          currency=charged.currency, milestones=charged.milestones)
    except ValidationError:
        return None
