"""Every Kafka topic of the platform, with how it is created (broker auto-creation is off)."""

from dataclasses import dataclass

DEFAULT_PARTITIONS = 12
FOREVER = -1
SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000
THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    retention_ms: int
    partitions: int = DEFAULT_PARTITIONS
    description: str = ""


CONTRACTS_COMMANDS = "contracts.commands"
BILLING_COMMANDS = "billing.commands"
# Operators' commands (actor `admin:<name>`), on topics of their own that only the `admin` principal may write;
# platform_schemas.actors says which command goes where.
CONTRACTS_ADMIN_COMMANDS = "contracts.admin-commands"
BILLING_ADMIN_COMMANDS = "billing.admin-commands"
CONTRACTS_EVENTS = "contracts.events"
ESCROW_EVENTS = "escrow.events"
BILLING_EVENTS = "billing.events"
NOTIFICATIONS_EVENTS = "notifications.events"
# Saga participants' own command topics: written only by the contracts saga orchestrator
# (and billing's bonus batch for escrow), read by the participant. Replies come back as events.
BILLING_SAGA_COMMANDS = "billing.saga-commands"
ESCROW_SAGA_COMMANDS = "escrow.saga-commands"


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


_BASE = [
    Topic(CONTRACTS_COMMANDS, SEVEN_DAYS_MS, description="Commands from other back ends"),
    Topic(BILLING_COMMANDS, SEVEN_DAYS_MS, description="Billing-method commands from other back ends"),
    Topic(CONTRACTS_ADMIN_COMMANDS, SEVEN_DAYS_MS,
          description="Operators' account and dispute commands (actor admin:<name>)"),
    Topic(BILLING_ADMIN_COMMANDS, SEVEN_DAYS_MS,
          description="Operators' RunBonusBatch and RetryRefund (actor admin:<name>)"),
    Topic(BILLING_SAGA_COMMANDS, SEVEN_DAYS_MS, description="Charge / refund requests from sagas"),
    Topic(ESCROW_SAGA_COMMANDS, SEVEN_DAYS_MS, description="Hold / release / refund / bonus postings"),
    Topic(CONTRACTS_EVENTS, FOREVER, description="Facts of the contracts service"),
    Topic(ESCROW_EVENTS, FOREVER, description="Facts of the escrow ledger"),
    Topic(BILLING_EVENTS, FOREVER, description="Facts of billing"),
    Topic(NOTIFICATIONS_EVENTS, FOREVER, description="Facts of notifications"),
]

TOPICS: list[Topic] = _BASE + [
    Topic(dlq(t.name), THIRTY_DAYS_MS, description=f"Dead letters of {t.name}") for t in _BASE
]
