"""Who may do what on Kafka: THE table of the platform's principals and their ACLs.

One row per principal. The local scripts apply it to the broker (deploy/local/kafka/acls.py: SCRAM users,
then ACLs, at every start), deploy/k8s/generate.py renders it as Strimzi KafkaUser resources, and
tests/integration/test_kafka_acls.py checks, principal by principal and topic by topic, that the broker
enforces it. The broker refuses everything a row does not grant (`allow.everyone.if.no.acl.found=false`).

- A service reads the topics it consumes (its Subscriptions in bootstrap.py: tests/deploy checks them) in its
  own consumer group, and writes the topics it owns: its events, the saga command topics it publishes to, and
  the dead letters of what it consumes.
- integrator (the marketplace's other back ends) writes the two public command topics, reads the facts.
- admin (operators' tooling, escrowctl) writes the admin command topics; it also writes the two public command
  topics, which gives it nothing integrator has not, so that it can replay their dead letters (`escrowctl dlq
  replay`); it reads the facts and every dead-letter topic. It cannot write a saga command or an event topic:
  a dead letter of those is replayed by the super user (see README, "Kafka security").
- analytics reads the facts only.
- The super user (SUPER_USER) is the broker itself and the local setup scripts (topics, ACLs, test fixtures);
  it is in no row and given to no service or client.
"""

from dataclasses import dataclass

from .topics import (
    BILLING_ADMIN_COMMANDS,
    BILLING_COMMANDS,
    BILLING_EVENTS,
    BILLING_SAGA_COMMANDS,
    CONTRACTS_ADMIN_COMMANDS,
    CONTRACTS_COMMANDS,
    CONTRACTS_EVENTS,
    ESCROW_EVENTS,
    ESCROW_SAGA_COMMANDS,
    NOTIFICATIONS_EVENTS,
    TOPICS,
    dlq,
)

SUPER_USER = "broker"
MECHANISM = "SCRAM-SHA-512"
EVENT_TOPICS = (CONTRACTS_EVENTS, ESCROW_EVENTS, BILLING_EVENTS, NOTIFICATIONS_EVENTS)
PUBLIC_COMMAND_TOPICS = (CONTRACTS_COMMANDS, BILLING_COMMANDS)
ADMIN_COMMAND_TOPICS = (CONTRACTS_ADMIN_COMMANDS, BILLING_ADMIN_COMMANDS)


@dataclass(frozen=True)
class Principal:
    name: str
    reads: tuple[str, ...]  # topics: Read + Describe
    writes: tuple[str, ...]  # topics: Write + Describe
    group: str  # consumer group (Read + Describe): the service's own, or a prefix for the clients' groups
    group_prefixed: bool = False
    is_service: bool = False

    @property
    def idempotent_producer(self) -> bool:  # IdempotentWrite on the cluster: every producer here is idempotent
        return bool(self.writes)


def _service(name: str, consumes: tuple[str, ...], owns: tuple[str, ...]) -> Principal:
    return Principal(name, reads=consumes, writes=owns + tuple(dlq(t) for t in consumes), group=name,
                     is_service=True)


def _dead_letter_topics() -> tuple[str, ...]:
    return tuple(t.name for t in TOPICS if t.name.endswith(".dlq"))


PRINCIPALS: dict[str, Principal] = {p.name: p for p in [
    _service("contracts", consumes=(CONTRACTS_COMMANDS, CONTRACTS_ADMIN_COMMANDS, BILLING_EVENTS, ESCROW_EVENTS),
             owns=(CONTRACTS_EVENTS, BILLING_SAGA_COMMANDS, ESCROW_SAGA_COMMANDS)),
    # escrow reads billing's facts for the past-due part of a balance
    _service("escrow", consumes=(ESCROW_SAGA_COMMANDS, BILLING_EVENTS), owns=(ESCROW_EVENTS,)),
    # the bonus batch credits bonuses through escrow's saga commands
    _service("billing", consumes=(BILLING_COMMANDS, BILLING_ADMIN_COMMANDS, BILLING_SAGA_COMMANDS, ESCROW_EVENTS,
                                  CONTRACTS_EVENTS),
             owns=(BILLING_EVENTS, ESCROW_SAGA_COMMANDS)),
    _service("notifications", consumes=(CONTRACTS_EVENTS, BILLING_EVENTS), owns=(NOTIFICATIONS_EVENTS,)),
    Principal("integrator", reads=EVENT_TOPICS, writes=PUBLIC_COMMAND_TOPICS, group="integrator-",
              group_prefixed=True),
    Principal("admin", reads=EVENT_TOPICS + _dead_letter_topics(),
              writes=ADMIN_COMMAND_TOPICS + PUBLIC_COMMAND_TOPICS, group="admin-", group_prefixed=True),
    Principal("analytics", reads=EVENT_TOPICS, writes=(), group="analytics-", group_prefixed=True),
]}
SERVICES = tuple(p.name for p in PRINCIPALS.values() if p.is_service)


@dataclass(frozen=True)
class Acl:
    """One allow rule, as the broker stores it (resource type, name, pattern; operation)."""

    principal: str
    resource: str  # topic | group | cluster
    name: str
    operation: str  # Read | Write | Describe | IdempotentWrite
    prefixed: bool = False


def acls(principal: Principal) -> list[Acl]:
    rules = [Acl(principal.name, "topic", t, op) for t in principal.reads for op in ("Read", "Describe")]
    rules += [Acl(principal.name, "topic", t, op) for t in principal.writes for op in ("Write", "Describe")]
    rules += [Acl(principal.name, "group", principal.group, op, principal.group_prefixed)
              for op in ("Read", "Describe")]
    if principal.idempotent_producer:
        rules.append(Acl(principal.name, "cluster", "kafka-cluster", "IdempotentWrite"))
    return list(dict.fromkeys(rules))  # a topic both read and written: Describe once


def all_acls() -> list[Acl]:
    return [rule for p in PRINCIPALS.values() for rule in acls(p)]


def may(principal: str, operation: str, topic: str) -> bool:
    """What the table allows (the ACL matrix test compares the broker's answers with this)."""
    p = PRINCIPALS[principal]
    return topic in (p.reads if operation == "Read" else p.writes)
