"""Actors by role, at the edge (issue 9, item 3): every command × every kind of actor → allowed or
`forbidden`, through the real CommandDispatcher (with the actor table of platform_schemas.actors) and the
real handlers, on a contract in a state where the command is otherwise valid.

"Allowed" means the command got past every actor check: it had its effect (or, for billing, whose
handlers have no in-memory repositories, reached its database).
"""

from datetime import date

import pytest
from platform_runtime.dispatch import CommandDispatcher
from platform_schemas import Message, new_envelope
from platform_schemas.actors import ACCOUNT, ADMIN, COMMAND_ACTORS, SYSTEM, kind_of
from platform_schemas.commands import billing as bc
from platform_schemas.commands import contracts as cc

from billing.service_layer import bonus_batch, handlers as billing_handlers
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


def test_every_command_of_both_command_topics_has_a_row_in_the_actor_table():
    assert set(COMMAND_ACTORS) == {m.__name__ for m in [*CONTRACT_COMMANDS, *BILLING_COMMANDS]}
    assert {type(c[0]).__name__ for c in CASES} == set(COMMAND_ACTORS)
    assert all(SYSTEM not in kinds for kinds in COMMAND_ACTORS.values())


@pytest.mark.parametrize("actor,kind", [
    ("system", SYSTEM), ("admin:ops", ADMIN), ("client-1", ACCOUNT), ("a:b", ACCOUNT), ("admin:", None),
    ("admin:a b", None), ("client 1", None), ("", None), ("x" * 65, None), ("admin:" + "a" * 65, None),
])
def test_kinds_of_actor(actor, kind):
    assert kind_of(actor) == kind


async def outcome(data: Message, actor: str, m1_status, status, account_status) -> str:
    people = [account(CLIENT, "client", status=account_status, appealable=True if account_status != "active"
                      else None), account(FREELANCER, "freelancer"), account(OTHER_CLIENT, "client"),
              account(OTHER_FREELANCER, "freelancer")]
    ctx = context(*people)
    if m1_status is not None:
        contract = contract_with(ctx, m1_status, status)
        if m1_status == domain.PAID:
            contract.milestones = contract.milestones[:1]
    is_billing = isinstance(data, (bc.AddBillingMethod, bc.SetPrimaryBillingMethod, bc.RemoveBillingMethod,
                                   bc.RunBonusBatch, bc.RetryRefund))
    handlers = BILLING_COMMANDS if is_billing else CONTRACT_COMMANDS

    def same_context(uow, envelope):
        ctx.envelope = envelope
        return ctx

    dispatcher = CommandDispatcher("commands", handlers, "events", same_context, actors=COMMAND_ACTORS)
    uow: FakeUnitOfWork = ctx.uow
    envelope = new_envelope(data, subject="c-1", actor=actor, source="tests")
    try:
        await dispatcher.dispatch(envelope, uow)
    except AttributeError:  # billing's handler reached its (absent) database: past every actor check
        assert is_billing
        return "allowed"
    rejected = [m for m in uow.messages() if m.type == "CommandRejected"]
    if rejected:
        return rejected[0].data["reason_code"]
    return "allowed"


MATRIX = [(data, who, m1, status, acct, who in allowed)
          for data, m1, status, acct, allowed in CASES for who in ACTORS]


@pytest.mark.parametrize("data,who,m1,status,acct,allowed", MATRIX,
                         ids=[f"{type(c[0]).__name__}-{c[1]}" for c in MATRIX])
async def test_every_command_from_every_kind_of_actor(data, who, m1, status, acct, allowed):
    result = await outcome(data, ACTORS[who], m1, status, acct)
    if allowed:
        assert result != "forbidden", f"{type(data).__name__} from {who}"
        assert result == "allowed", f"{type(data).__name__} from {who} was refused {result}: set-up is wrong"
    else:
        assert result == "forbidden", f"{type(data).__name__} from {who}: {result}"


async def test_an_account_cannot_be_registered_under_a_name_that_is_a_kind_of_actor():
    for account_id in ("system", "admin:bob"):
        data = cc.RegisterAccount(account_id=account_id, role="client", name="X", email="x@example.test")
        assert await outcome(data, "admin:ops", None, None, "active") == "invalid_data"
