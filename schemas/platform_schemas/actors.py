"""Who may send which command from outside (CONTRACT.md's tables), by kind of actor.

An actor is `system` (the platform itself: timers, the scheduled batch; never accepted from a command
topic), `admin:<name>`, or an account id. Whether the account is the right one (the contract's client, the
account itself) is the handler's check; this table is the edge's: a kind not listed is `forbidden` before
any handler runs.
"""

import re

SYSTEM, ADMIN, ACCOUNT = "system", "admin", "account"
_ADMIN = re.compile(r"^admin:[A-Za-z0-9._-]{1,64}$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

COMMAND_ACTORS: dict[str, frozenset[str]] = {
    # contracts.commands
    "RegisterAccount": frozenset({ADMIN}),
    "SuspendAccount": frozenset({ADMIN}),
    "RequestReactivation": frozenset({ACCOUNT}),  # the account itself
    "ReactivateAccount": frozenset({ADMIN}),
    "SendOffer": frozenset({ACCOUNT}),  # the client
    "WithdrawOffer": frozenset({ACCOUNT}),  # the client
    "AcceptOffer": frozenset({ACCOUNT}),  # the freelancer
    "DeclineOffer": frozenset({ACCOUNT}),  # the freelancer
    "AddMilestone": frozenset({ACCOUNT}),  # the client
    "EditMilestone": frozenset({ACCOUNT}),  # the client
    "RemoveMilestone": frozenset({ACCOUNT}),  # the client
    "ActivateMilestone": frozenset({ACCOUNT}),  # the client
    "SubmitWork": frozenset({ACCOUNT}),  # the freelancer
    "ApproveMilestone": frozenset({ACCOUNT}),  # the client
    "RequestChanges": frozenset({ACCOUNT}),  # the client
    "GiveBonus": frozenset({ACCOUNT}),  # the client
    "EndContract": frozenset({ACCOUNT}),  # the client or the freelancer
    "CancelContract": frozenset({ACCOUNT}),  # the client
    "RespondToRefundRequest": frozenset({ACCOUNT}),  # the freelancer
    "ResolveDispute": frozenset({ADMIN}),
    # billing.commands
    "AddBillingMethod": frozenset({ACCOUNT}),  # the account itself
    "SetPrimaryBillingMethod": frozenset({ACCOUNT}),
    "RemoveBillingMethod": frozenset({ACCOUNT}),
    "RunBonusBatch": frozenset({ADMIN}),  # the scheduled batch (system) runs inside billing, not from the topic
    "RetryRefund": frozenset({ADMIN}),  # an operator, for a refund that needs attention
}


def kind_of(actor: str) -> str | None:
    """`system`, `admin`, `account`, or None for an actor that is none of them (malformed)."""
    if actor == SYSTEM:
        return SYSTEM
    if actor.startswith("admin:"):
        return ADMIN if _ADMIN.match(actor) else None
    return ACCOUNT if _ACCOUNT.match(actor) else None


def is_account_id(value: str) -> bool:
    """An id an account may have: not `system` nor `admin:…`, which name other kinds of actor."""
    return kind_of(value) == ACCOUNT
