"""Actors by role and topic, at the edge (issue 9 item 3, issue 12 item 2): every command × each command topic
of its service × every kind of actor → allowed or `forbidden`, through the real CommandDispatcher (with the
table of platform_schemas.actors) and the real handlers, on a contract in a state where the command is
otherwise valid.

The rule, written out here independently of the table: an operator's command (admin-only) is accepted only on
its service's admin topic and only from `admin:<name>`; every other command only on the integrator topic and
only from the account(s) CONTRACT.md names; an `admin:` actor on an integrator topic, anything but an
admin-only command from an `admin:` actor on an admin topic, and `system` anywhere are `forbidden`.

"Allowed" means the command got past every actor check: it had its effect (or, for billing, whose
handlers have no in-memory repositories, reached its database).
"""

from datetime import date

import pytest
from platform_runtime.dispatch import CommandDispatcher
from platform_schemas import Message, new_envelope
from platform_schemas.actors import (
    ACCOUNT, ADMIN, ADMIN_TOPICS, COMMAND_ROUTES, INTEGRATOR_TOPICS, SYSTEM, command_topic, kind_of,
)
from platform_schemas.commands import billing as bc
from platform_schemas.commands import contracts as cc

from billing.service_layer import bonus_batch, handlers as billing_handlers
from platform_schemas.topics import (
    BILLING_ADMIN_COMMANDS, BILLING_COMMANDS as BILLING_TOPIC, CONTRACTS_ADMIN_COMMANDS, CONTRACTS_COMMANDS,
)

from contracts.bootstrap import COMMANDS as CONTRACT_COMMANDS
from contracts.domain import contracts as domain
from tests.support.fakes import FakeUnitOfWork
from tests.unit.test_accounts import account, context, contract_with

pytestmark = pytest.mark.unit

BILLING_COMMANDS = {**billing_handlers.COMMANDS, **bonus_batch.COMMANDS}
CLIENT, FREELANCER, OTHER_CLIENT, OTHER_FREELANCER = "client-1", "free-1", "client-2", "free-2"
ACTORS = {
    "the contract's client": CLIENT, "its freelancer": FREELANCER, "another client": OTHER_CLIENT,
    "another freelancer": OTHER_FREELANCER, "admin": "admin:ops", "system": "system", "unknown": "nobody-9",
    "malformed": "admin:", "malformed (spaces)": "client 1",
}
ADMIN_ONLY = {"admin"}
CONTRACT_CLIENT = {"the contract's client"}
CONTRACT_FREELANCER = {"its freelancer"}

# (command, m-1's state, the contract's status, the account's status, who may send it)
CASES = [
    (cc.RegisterAccount(account_id="new-1", role="client", name="New", email="n@example.test"), None, None,
     "active", ADMIN_ONLY),
    (cc.SuspendAccount(account_id=CLIENT, reason="fraud", appealable=True), None, None, "active", ADMIN_ONLY),
    (cc.RequestReactivation(account_id=CLIENT), None, None, "suspended", CONTRACT_CLIENT),
    (cc.ReactivateAccount(account_id=CLIENT), None, None, "suspended", ADMIN_ONLY),
    (cc.SendOffer(contract_id="c-9", client_id=CLIENT, freelancer_id=FREELANCER, title="T", currency="USD",
                  milestones=[cc.MilestoneSpec(milestone_id="m-9", title="M", amount=5_000)]), None, None, "active",
     CONTRACT_CLIENT),
    (cc.WithdrawOffer(contract_id="c-1"), domain.FUNDED, domain.OFFERED, "active", CONTRACT_CLIENT),
    (cc.AcceptOffer(contract_id="c-1"), domain.FUNDED, domain.OFFERED, "active", CONTRACT_FREELANCER),
    (cc.DeclineOffer(contract_id="c-1"), domain.FUNDED, domain.OFFERED, "active", CONTRACT_FREELANCER),
    (cc.AddMilestone(contract_id="c-1", milestone_id="m-3", title="More", amount=5_000), domain.FUNDED,
     domain.ACTIVE, "active", CONTRACT_CLIENT),
    (cc.EditMilestone(contract_id="c-1", milestone_id="m-2", title="Final art"), domain.FUNDED, domain.ACTIVE,
     "active", CONTRACT_CLIENT),
    (cc.RemoveMilestone(contract_id="c-1", milestone_id="m-2"), domain.FUNDED, domain.ACTIVE, "active",
     CONTRACT_CLIENT),
    (cc.ActivateMilestone(contract_id="c-1", milestone_id="m-2"), domain.FUNDED, domain.ACTIVE, "active",
     CONTRACT_CLIENT),
    (cc.SubmitWork(contract_id="c-1", milestone_id="m-1", message="done"), domain.FUNDED, domain.ACTIVE, "active",
     CONTRACT_FREELANCER),
    (cc.ApproveMilestone(contract_id="c-1", milestone_id="m-1"), domain.SUBMITTED, domain.ACTIVE, "active",
     CONTRACT_CLIENT),
    (cc.RequestChanges(contract_id="c-1", milestone_id="m-1", message="more"), domain.SUBMITTED, domain.ACTIVE,
     "active", CONTRACT_CLIENT),
    (cc.GiveBonus(contract_id="c-1", bonus_id="b-1", amount=1_000, note="thanks"), domain.FUNDED, domain.ACTIVE,
     "active", CONTRACT_CLIENT),
    (cc.EndContract(contract_id="c-1"), domain.PAID, domain.ACTIVE, "active", CONTRACT_CLIENT | CONTRACT_FREELANCER),
    (cc.CancelContract(contract_id="c-1", reason="no longer needed"), domain.FUNDED, domain.ACTIVE, "active",
     CONTRACT_CLIENT),
    (cc.RespondToRefundRequest(contract_id="c-1", milestone_id="m-1", accept=True), domain.REFUND_REQUESTED,
     domain.CANCELLING, "active", CONTRACT_FREELANCER),
    (cc.ResolveDispute(contract_id="c-1", milestone_id="m-1", release_amount=4_000, refund_amount=6_000),
     domain.DISPUTED, domain.CANCELLING, "active", ADMIN_ONLY),
    (bc.AddBillingMethod(account_id=CLIENT, billing_method_id="card-9", kind="card", token="tok_visa"), None, None,
     "active", CONTRACT_CLIENT),
    (bc.SetPrimaryBillingMethod(account_id=CLIENT, billing_method_id="card-9"), None, None, "active",
     CONTRACT_CLIENT),
    (bc.RemoveBillingMethod(account_id=CLIENT, billing_method_id="card-9"), None, None, "active", CONTRACT_CLIENT),
    (bc.RunBonusBatch(business_date=date(2026, 11, 25)), None, None, "active", ADMIN_ONLY),
    (bc.RetryRefund(refund_id="refund-1:gateway"), None, None, "active", ADMIN_ONLY),
]


# Each service's integrator topic and admin topic, which both consume every command of the service.
CONTRACTS_TOPICS = {"integrator": CONTRACTS_COMMANDS, "admin": CONTRACTS_ADMIN_COMMANDS}
BILLING_TOPICS = {"integrator": BILLING_TOPIC, "admin": BILLING_ADMIN_COMMANDS}


def is_billing(data: Message) -> bool:
    return type(data).__name__ in {m.__name__ for m in BILLING_COMMANDS}


def topics_of_service(data: Message) -> dict[str, str]:
    return BILLING_TOPICS if is_billing(data) else CONTRACTS_TOPICS


def test_every_command_of_both_services_has_a_row_in_the_route_table():
    assert set(COMMAND_ROUTES) == {m.__name__ for m in [*CONTRACT_COMMANDS, *BILLING_COMMANDS]}
    assert {type(c[0]).__name__ for c in CASES} == set(COMMAND_ROUTES)
    assert all(SYSTEM not in route.actors for route in COMMAND_ROUTES.values())


def test_admin_actors_only_on_admin_topics_and_nothing_else_there():
    for name, route in COMMAND_ROUTES.items():
        assert (ADMIN in route.actors) == (route.topic in ADMIN_TOPICS), name
        assert route.topic in ADMIN_TOPICS | INTEGRATOR_TOPICS, name
        if route.topic in ADMIN_TOPICS:
            assert route.actors == {ADMIN}, name


def test_each_command_is_routed_to_a_topic_of_its_own_service():
    for data, *_, allowed in CASES:
        side = "admin" if allowed == ADMIN_ONLY else "integrator"
        assert command_topic(type(data).__name__) == topics_of_service(data)[side], type(data).__name__


@pytest.mark.parametrize("actor,kind", [
    ("system", SYSTEM), ("admin:ops", ADMIN), ("client-1", ACCOUNT), ("a:b", ACCOUNT), ("admin:", None),
    ("admin:a b", None), ("client 1", None), ("", None), ("x" * 65, None), ("admin:" + "a" * 65, None),
])
def test_kinds_of_actor(actor, kind):
    assert kind_of(actor) == kind


async def outcome(data: Message, actor: str, m1_status, status, account_status, topic: str | None = None) -> str:
    people = [account(CLIENT, "client", status=account_status, appealable=True if account_status != "active"
                      else None), account(FREELANCER, "freelancer"), account(OTHER_CLIENT, "client"),
              account(OTHER_FREELANCER, "freelancer")]
    ctx = context(*people)
    if m1_status is not None:
        contract = contract_with(ctx, m1_status, status)
        if m1_status == domain.PAID:
            contract.milestones = contract.milestones[:1]
    billing = is_billing(data)
    handlers = BILLING_COMMANDS if billing else CONTRACT_COMMANDS

    def same_context(uow, envelope):
        ctx.envelope = envelope
        return ctx

    topic = topic or command_topic(type(data).__name__)
    dispatcher = CommandDispatcher(topic, handlers, "events", same_context, routes=COMMAND_ROUTES)
    uow: FakeUnitOfWork = ctx.uow
    envelope = new_envelope(data, subject="c-1", actor=actor, source="tests")
    try:
        await dispatcher.dispatch(envelope, uow)
    except AttributeError:  # billing's handler reached its (absent) database: past every actor check
        assert billing
        return "allowed"
    rejected = [m for m in uow.messages() if m.type == "CommandRejected"]
    if rejected:
        return rejected[0].data["reason_code"]
    return "allowed"


def allowed_on(side: str, who: str, allowed: set[str]) -> bool:
    """The rule: admin-only commands on the admin topic, the others on the integrator topic, each from its actors."""
    return who in allowed and side == ("admin" if allowed == ADMIN_ONLY else "integrator")


MATRIX = [(data, side, who, m1, status, acct, allowed_on(side, who, allowed))
          for data, m1, status, acct, allowed in CASES for side in ("integrator", "admin") for who in ACTORS]


@pytest.mark.parametrize("data,side,who,m1,status,acct,allowed", MATRIX,
                         ids=[f"{type(c[0]).__name__}-{c[1]}-{c[2]}" for c in MATRIX])
async def test_every_command_on_each_command_topic_from_every_kind_of_actor(data, side, who, m1, status, acct,
                                                                            allowed):
    topic = topics_of_service(data)[side]
    result = await outcome(data, ACTORS[who], m1, status, acct, topic)
    what = f"{type(data).__name__} on {topic} from {who}"
    if allowed:
        assert result != "forbidden", what
        assert result == "allowed", f"{what} was refused {result}: set-up is wrong"
    else:
        assert result == "forbidden", f"{what}: {result}"


@pytest.mark.parametrize("data", [c[0] for c in CASES], ids=[type(c[0]).__name__ for c in CASES])
async def test_a_command_on_the_other_services_topics_is_unknown_there(data):
    other = CONTRACTS_TOPICS if is_billing(data) else BILLING_TOPICS
    for topic in other.values():
        dispatcher = CommandDispatcher(topic, CONTRACT_COMMANDS if is_billing(data) else BILLING_COMMANDS, "events",
                                       routes=COMMAND_ROUTES)
        uow = FakeUnitOfWork()
        await dispatcher.dispatch(new_envelope(data, subject="c-1", actor="admin:ops", source="tests"), uow)
        assert [m.data["reason_code"] for m in uow.messages()] == ["unknown_command"], topic


async def test_an_account_cannot_be_registered_under_a_name_that_is_a_kind_of_actor():
    for account_id in ("system", "admin:bob"):
        data = cc.RegisterAccount(account_id=account_id, role="client", name="X", email="x@example.test")
        assert await outcome(data, "admin:ops", None, None, "active") == "invalid_data"


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append(topic)


async def test_the_platform_client_sends_operators_commands_to_the_admin_topics_with_the_admin_producer():
    from platform_runtime.client import PlatformClient

    client = PlatformClient()
    client.producer, client.admin_producer = RecordingProducer(), RecordingProducer()
    for data, *_ in CASES:
        await client.send(data, subject="s-1", actor="admin:ops")
    admin_only = [type(c[0]).__name__ for c in CASES if c[-1] == ADMIN_ONLY]
    assert client.admin_producer.sent == [command_topic(name) for name in admin_only]
    assert set(client.admin_producer.sent) == ADMIN_TOPICS
    assert set(client.producer.sent) == INTEGRATOR_TOPICS
    assert len(client.producer.sent) == len(CASES) - len(admin_only)
