"""Event shapes every service shares."""

from typing import Literal

from ..types import Event

# The closed list of reasons a command can be refused for; documented in the README.
REASON_CODES = (
    "invalid_data",
    "unknown_command",
    "unsupported_schema_version",
    "not_found",
    "already_exists",
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
)
ReasonCode = Literal[REASON_CODES]


class CommandRejected(Event):
    command_id: str
    command_type: str
    reason_code: ReasonCode
    message: str
