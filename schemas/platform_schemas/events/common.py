"""Event shapes every service shares."""

from typing import Literal

from pydantic import Field

from ..types import Event, Id

# The closed list of reasons a command can be refused for; documented in the README.
REASON_CODES = (
    "invalid_data",
    "unknown_command",
    "unsupported_schema_version",
    "not_found",
    "already_exists",
    "id_taken",
    "forbidden",
    "invalid_state",
    "account_not_active",
    "idempotency_conflict",
    "amount_out_of_range",
    "currency_mismatch",
    "escrow_held",
    "amounts_do_not_add_up",
    "date_in_future",
    "insufficient_funds",
    "too_large",
    "past_due_balance",
)
ReasonCode = Literal[REASON_CODES]


class CommandRejected(Event):
    command_id: str
    command_type: str
    reason_code: ReasonCode
    message: str


class StepFailed(Event):
    """Base of every saga participant's typed failure reply (`<Step>Failed`): the step was not done and
    left no effect, so the orchestrator may compensate. `retryable`: the same step (same `step_id`) may
    succeed when sent again later; otherwise it never will. Every step is answered by its success event
    or by one of these, also when the participant could not handle the message at all."""

    saga_id: str
    step_id: Id
    reason_code: str = Field(max_length=64)
    message: str = Field(max_length=2000)
    retryable: bool = False
