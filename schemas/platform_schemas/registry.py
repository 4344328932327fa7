"""Which message types travel on which topic, and the model of each (type, version)."""

import inspect
from types import ModuleType

from . import topics
from .actors import COMMAND_ROUTES
from .commands import billing as billing_commands
from .commands import contracts as contracts_commands
from .commands import saga as saga_commands
from .events import billing as billing_events
from .events import common
from .events import contracts as contracts_events
from .events import escrow as escrow_events
from .events import notifications as notification_events
from .types import Message

# Nested value objects, not messages of their own.
_NOT_MESSAGES = {"MilestoneSpec", "MilestoneTerms", "MilestoneAmount", "BonusToPost", "UpcomingItem"}


def _messages(module: ModuleType) -> dict[str, type[Message]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, Message) and cls.__module__ == module.__name__ and name not in _NOT_MESSAGES
    }


def _commands_on(topic: str) -> dict[str, type[Message]]:
    """The commands from outside that travel on `topic` (each has one: platform_schemas.actors)."""
    every = {**_messages(contracts_commands), **_messages(billing_commands)}
    return {name: model for name, model in every.items() if COMMAND_ROUTES[name].topic == topic}


# topic -> {type name -> model}; the public contract plus the saga topics.
BY_TOPIC: dict[str, dict[str, type[Message]]] = {
    topics.CONTRACTS_COMMANDS: _commands_on(topics.CONTRACTS_COMMANDS),
    topics.CONTRACTS_ADMIN_COMMANDS: _commands_on(topics.CONTRACTS_ADMIN_COMMANDS),
    topics.BILLING_COMMANDS: _commands_on(topics.BILLING_COMMANDS),
    topics.BILLING_ADMIN_COMMANDS: _commands_on(topics.BILLING_ADMIN_COMMANDS),
    topics.BILLING_SAGA_COMMANDS: {
        n: m for n, m in _messages(saga_commands).items() if n in ("ChargeClient", "RefundCharge")
    },
    topics.ESCROW_SAGA_COMMANDS: {
        n: m for n, m in _messages(saga_commands).items() if n not in ("ChargeClient", "RefundCharge")
    },
    topics.CONTRACTS_EVENTS: {**_messages(contracts_events), "CommandRejected": common.CommandRejected},
    topics.ESCROW_EVENTS: {**_messages(escrow_events), "CommandRejected": common.CommandRejected},
    topics.BILLING_EVENTS: {**_messages(billing_events), "CommandRejected": common.CommandRejected},
    topics.NOTIFICATIONS_EVENTS: _messages(notification_events),
}

ALL: dict[str, type[Message]] = {n: m for by_type in BY_TOPIC.values() for n, m in by_type.items()}

# (type, version) -> model. A new version of a type is added beside the old one, which stays
# accepted until it is retired.
VERSIONS: dict[tuple[str, int], type[Message]] = {(n, m.VERSION): m for n, m in ALL.items()}


def model_for(type_name: str, version: int = 1) -> type[Message] | None:
    return VERSIONS.get((type_name, version))
