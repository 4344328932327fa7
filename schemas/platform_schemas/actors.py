"""Who may send which command from outside, and on which topic (CONTRACT.md's tables and its trust rules).

An actor is `system` (the platform itself: timers, the scheduled batch), `admin:<name>` (an operator), or an
account id. Every command from outside has exactly one topic, its row's:
- an operator's command (actor `admin:<name>`) travels on its service's admin topic
  (`contracts.admin-commands`, `billing.admin-commands`), which only the `admin` Kafka principal may write;
- every other command travels on the integrator topic (`contracts.commands`, `billing.commands`), which
  other back ends write as the `integrator` principal, acting for the account they name.
So the edge (the shared CommandDispatcher, before any handler runs) refuses `forbidden` a command on a topic
other than its row's (an admin-only type on an integrator topic, an account's command on an admin topic), a
command from a kind of actor its row does not list (an `admin:` actor is listed only on admin topics), and
`system`, which no row lists. Whether the account is the right one (the contract's client, the account
itself) is the handler's check.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .topics import BILLING_ADMIN_COMMANDS, BILLING_COMMANDS, CONTRACTS_ADMIN_COMMANDS, CONTRACTS_COMMANDS

SYSTEM, ADMIN, ACCOUNT = "system", "admin", "account"
_ADMIN = re.compile(r"^admin:[A-Za-z0-9._-]{1,64}$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

ADMIN_TOPICS = frozenset({CONTRACTS_ADMIN_COMMANDS, BILLING_ADMIN_COMMANDS})
INTEGRATOR_TOPICS = frozenset({CONTRACTS_COMMANDS, BILLING_COMMANDS})


@dataclass(frozen=True)
class Route:
    """Where a command may come from: its one topic and the kinds of actor it accepts there."""

    topic: str
    actors: frozenset[str]


def _by_account(topic: str) -> Route:
    return Route(topic, frozenset({ACCOUNT}))


def _by_admin(topic: str) -> Route:
    return Route(topic, frozenset({ADMIN}))


COMMAND_ROUTES: dict[str, Route] = {
    "RegisterAccount": _by_admin(CONTRACTS_ADMIN_COMMANDS),
    "SuspendAccount": _by_admin(CONTRACTS_ADMIN_COMMANDS),
    "RequestReactivation": _by_account(CONTRACTS_COMMANDS),  # the account itself
    "ReactivateAccount": _by_admin(CONTRACTS_ADMIN_COMMANDS),
    "SendOffer": _by_account(CONTRACTS_COMMANDS),  # the client
    "WithdrawOffer": _by_account(CONTRACTS_COMMANDS),  # the client
    "AcceptOffer": _by_account(CONTRACTS_COMMANDS),  # the freelancer
    "DeclineOffer": _by_account(CONTRACTS_COMMANDS),  # the freelancer
    "AddMilestone": _by_account(CONTRACTS_COMMANDS),  # the client
    "EditMilestone": _by_account(CONTRACTS_COMMANDS),  # the client
    "RemoveMilestone": _by_account(CONTRACTS_COMMANDS),  # the client
    "ActivateMilestone": _by_account(CONTRACTS_COMMANDS),  # the client
    "SubmitWork": _by_account(CONTRACTS_COMMANDS),  # the freelancer
    "ApproveMilestone": _by_account(CONTRACTS_COMMANDS),  # the client
    "RequestChanges": _by_account(CONTRACTS_COMMANDS),  # the client
    "GiveBonus": _by_account(CONTRACTS_COMMANDS),  # the client
    "EndContract": _by_account(CONTRACTS_COMMANDS),  # the client or the freelancer
    "CancelContract": _by_account(CONTRACTS_COMMANDS),  # the client
    "RespondToRefundRequest": _by_account(CONTRACTS_COMMANDS),  # the freelancer
    "ResolveDispute": _by_admin(CONTRACTS_ADMIN_COMMANDS),
    "AddBillingMethod": _by_account(BILLING_COMMANDS),  # the account itself
    "SetPrimaryBillingMethod": _by_account(BILLING_COMMANDS),
    "RemoveBillingMethod": _by_account(BILLING_COMMANDS),
    # The scheduled batch (system) runs inside billing, not from a topic.
    "RunBonusBatch": _by_admin(BILLING_ADMIN_COMMANDS),
    "RetryRefund": _by_admin(BILLING_ADMIN_COMMANDS),  # for a refund that needs attention
}
COMMAND_ACTORS: dict[str, frozenset[str]] = {name: route.actors for name, route in COMMAND_ROUTES.items()}


def command_topic(type_name: str) -> str:
    """The one topic a command from outside is sent on (KeyError for a type that is no such command)."""
    return COMMAND_ROUTES[type_name].topic


def kind_of(actor: str) -> str | None:
    """`system`, `admin`, `account`, or None for an actor that is none of them (malformed)."""
    if actor == SYSTEM:
        return SYSTEM
    if actor.startswith("admin:"):
        return ADMIN if _ADMIN.match(actor) else None
    return ACCOUNT if _ACCOUNT.match(actor) else None


def refusal(type_name: str, topic: str, actor: str, routes: Mapping[str, Route] = COMMAND_ROUTES) -> str | None:
    """Why the edge refuses this command (`forbidden`), in words for CommandRejected; None when it may pass."""
    kind = kind_of(actor)
    if kind is None:
        return "the actor is neither an account id, admin:<name> nor system"
    route = routes.get(type_name)
    if route is None:
        return f"{type_name} is not a command accepted from outside"
    if kind == ADMIN and topic not in ADMIN_TOPICS:
        return f"admin:<name> actors are accepted only on the admin topics, not on {topic}"
    if route.topic != topic:
        return f"{type_name} is accepted only on {route.topic}, not on {topic}"
    if kind not in route.actors:
        return f"{type_name} is not accepted from actor kind {kind!r} on {topic}"
    return None


def is_account_id(value: str) -> bool:
    """An id an account may have: not `system` nor `admin:…`, which name other kinds of actor."""
    return kind_of(value) == ACCOUNT
