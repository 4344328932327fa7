"""The AsyncAPI 3.0 document of the platform: every topic, who writes and reads it, every message on it.

Built from `topics.TOPICS` and `registry.VERSIONS`, so it cannot drift from the models. Each service
serves it at `GET /asyncapi`; `python -m platform_schemas.generate` writes it to `schemas/asyncapi.json`.
"""

from importlib import metadata
from typing import Any

from . import registry, topics
from .envelope import CONTENT_TYPE, Envelope, dataschema_of
from .types import Message

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
SERVICES = ("contracts", "escrow", "billing", "notifications")

# Who writes and who consumes each base topic. Services are named by their consumer group; anything
# else is a writer outside the platform. The `.dlq` of a topic is written by that topic's consumers.
_FLOWS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    topics.CONTRACTS_COMMANDS: (("other back ends",), ("contracts",)),
    topics.BILLING_COMMANDS: (("other back ends",), ("billing",)),
    topics.CONTRACTS_ADMIN_COMMANDS: (("operators",), ("contracts",)),
    topics.BILLING_ADMIN_COMMANDS: (("operators",), ("billing",)),
    topics.BILLING_SAGA_COMMANDS: (("contracts",), ("billing",)),
    topics.ESCROW_SAGA_COMMANDS: (("contracts", "billing"), ("escrow",)),
    topics.CONTRACTS_EVENTS: (("contracts",), ("billing", "notifications")),
    topics.ESCROW_EVENTS: (("escrow",), ("contracts", "billing")),
    topics.BILLING_EVENTS: (("billing",), ("contracts", "escrow", "notifications")),
    topics.NOTIFICATIONS_EVENTS: (("notifications",), ()),
}

# Headers a consumer adds when it dead-letters a message (platform_runtime.dead_letters writes them);
# the value and key are the original ones.
DLQ_HEADERS: dict[str, str] = {
    "dlq.error": "The error that made the consumer give up, human readable (at most 2000 characters)",
    "dlq.original.topic": "Topic the message was read from",
    "dlq.original.partition": "Its partition (decimal)",
    "dlq.original.offset": "Its offset (decimal)",
    "dlq.attempts": "How many times it was tried (decimal)",
    "dlq.consumer.group": "Consumer group that gave up on it",
}

_KEY_DESCRIPTION = (
    "The envelope's `subject`: the contract id for everything about a contract (charges, refunds and "
    "bonuses on it included), the account id for account and billing-method messages, "
    "`bonus-batch-YYYY-MM-DD` for a bonus batch."
)


def writers_and_consumers(topic: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Who writes `topic` and which services consume it (a `.dlq` is written by its base's consumers)."""
    for base, (writers, consumers) in _FLOWS.items():
        if topic == base:
            return writers, consumers
        if topic == topics.dlq(base):
            return consumers, ()
    raise KeyError(f"no flow declared for topic {topic!r}")


def message_key(type_name: str, version: int) -> str:
    return f"{type_name}.v{version}"


def topics_of(type_name: str) -> list[str]:
    """The topics a message type travels on, in `topics.TOPICS` order."""
    return [t.name for t in topics.TOPICS if type_name in registry.BY_TOPIC.get(t.name, {})]


def _messages_by_topic() -> dict[str, list[tuple[str, int]]]:
    by_topic: dict[str, list[tuple[str, int]]] = {t.name: [] for t in topics.TOPICS}
    for type_name, version in sorted(registry.VERSIONS):
        for topic in topics_of(type_name):
            by_topic[topic].append((type_name, version))
    return by_topic


def _hoist(schema: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    """Move a pydantic schema's `$defs` into components/schemas; same name must mean same shape."""
    for name, definition in schema.pop("$defs", {}).items():
        if into.setdefault(name, definition) != definition:
            raise ValueError(f"two different schemas are both named {name!r}; rename one of the models")
    return schema


def _component_schema(model: type[Message] | type[Envelope], into: dict[str, Any]) -> dict[str, Any]:
    return _hoist(model.model_json_schema(ref_template="#/components/schemas/{model}"), into)


def _message(type_name: str, version: int, model: type[Message]) -> dict[str, Any]:
    kind = "command" if any(t.endswith("commands") for t in topics_of(type_name)) else "event"
    message: dict[str, Any] = {
        "name": type_name,
        "title": f"{type_name} (schema version {version})",
        "summary": (model.__doc__ or f"The {type_name} {kind}.").strip().splitlines()[0],
        "contentType": CONTENT_TYPE,
        "payload": {
            "allOf": [
                {"$ref": "#/components/schemas/Envelope"},
                {
                    "type": "object",
                    "required": ["data"],
                    "properties": {
                        "type": {"const": type_name},
                        "dataschema": {"const": dataschema_of(type_name, version)},
                        "data": {"$ref": f"#/components/schemas/{message_key(type_name, version)}"},
                    },
                },
            ]
        },
        "correlationId": {"location": "$message.payload#/correlationid"},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "minLength": 1, "description": _KEY_DESCRIPTION},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "tags": [{"name": kind}],
        "x-dataschema": dataschema_of(type_name, version),
    }
    return message


def _dead_letter() -> dict[str, Any]:
    return {
        "name": "DeadLetter",
        "title": "Dead letter",
        "summary": "A message its consumer could not parse or kept failing on, value and key unchanged.",
        "description": (
            "The original record's bytes, which may not be valid JSON. Headers say what went wrong and "
            "where the message came from. Envelopes that parse but whose type is unknown or whose data is "
            "invalid are not dead-lettered: they are answered with `CommandRejected`."
        ),
        "headers": {
            "type": "object",
            "required": sorted(DLQ_HEADERS),
            "properties": {name: {"type": "string", "description": d} for name, d in DLQ_HEADERS.items()},
        },
        "payload": {"description": "The original record's value, unchanged"},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The original record's key"},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _channel(topic: topics.Topic, message_keys: list[str]) -> dict[str, Any]:
    writers, consumers = writers_and_consumers(topic.name)
    return {
        "address": topic.name,
        "title": topic.name,
        "description": topic.description,
        "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in message_keys},
        "bindings": {
            "kafka": {
                "topic": topic.name,
                "partitions": topic.partitions,
                "topicConfiguration": {"cleanup.policy": ["delete"], "retention.ms": topic.retention_ms},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "x-writers": list(writers),
        "x-consumers": list(consumers),
    }


def _operation(service: str, action: str, topic: str) -> dict[str, Any]:
    verb = "consumes" if action == "receive" else "publishes to"
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{topic}"},
        "title": f"{service} {verb} {topic}",
        "tags": [{"name": service}],
    }
    if action == "receive":
        operation["bindings"] = {
            "kafka": {"groupId": {"type": "string", "const": service}, "bindingVersion": KAFKA_BINDING_VERSION}
        }
    return operation


def _version() -> str:
    try:
        return metadata.version("platform-schemas")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def build_asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document, as a JSON-ready dict (key order is irrelevant; serialise sorted)."""
    schemas: dict[str, Any] = {}
    schemas["Envelope"] = _component_schema(Envelope, schemas)
    messages: dict[str, Any] = {"DeadLetter": _dead_letter()}
    for (type_name, version), model in sorted(registry.VERSIONS.items()):
        key = message_key(type_name, version)
        schemas[key] = _component_schema(model, schemas)
        messages[key] = _message(type_name, version, model)

    by_topic = _messages_by_topic()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in topics.TOPICS:
        is_dlq = topic.name.endswith(".dlq")
        keys = ["DeadLetter"] if is_dlq else [message_key(n, v) for n, v in by_topic[topic.name]]
        channels[topic.name] = _channel(topic, keys)
        writers, consumers = writers_and_consumers(topic.name)
        for service in writers:
            if service in SERVICES:
                operations[f"{service}.send.{topic.name}"] = _operation(service, "send", topic.name)
        for service in consumers:
            operations[f"{service}.receive.{topic.name}"] = _operation(service, "receive", topic.name)

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Milestone escrow platform",
            "version": _version(),
            "description": (
                "Fixed-price contracts with milestone escrow: four services (contracts, escrow, billing, "
                "notifications) talking over Kafka. Every message is a CloudEvents 1.0 envelope in "
                "structured JSON mode; its `data` is described by the schema named in `dataschema` "
                "(`urn:escrow:schema:<Type>:<version>`). The Kafka key is the envelope's `subject`. Each "
                "service consumes in a consumer group named after itself. Amounts are JSON integers in "
                "minor units (strings, floats such as 10.0 and booleans are rejected)."
            ),
            "tags": [{"name": s} for s in SERVICES] + [{"name": "command"}, {"name": "event"}],
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "Default of KAFKA_BOOTSTRAP_SERVERS",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }
