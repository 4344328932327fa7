"""Accounts on fakes: suspension, reactivation, and what a suspended or inactive account may still do.

The handlers are the contracts service's own (service_layer/accounts.py, offers.py, milestones.py);
only the repositories and the unit of work are in-memory fakes (tests/support/fakes.py).
"""

import copy
from datetime import timedelta

import pytest
from platform_runtime.errors import Rejected
from platform_runtime.unit_of_work import Cause
from platform_schemas import Envelope, Message, new_envelope
from platform_schemas.commands.contracts import (
    AcceptOffer, ActivateMilestone, AddMilestone, ApproveMilestone, CancelContract, DeclineOffer, MilestoneSpec,
    ReactivateAccount, RequestReactivation, SendOffer, SubmitWork, SuspendAccount,
)

from contracts.domain import contracts as domain
from contracts.domain.accounts import Account
from contracts.domain.contracts import Contract, Milestone
from contracts.service_layer import accounts, endings, milestones, offers
from tests.support.fakes import NOON, FakeContext, FakeUnitOfWork, contracts_context

pytestmark = pytest.mark.unit

ADMIN = "admin:ops"


class TimedUnitOfWork(FakeUnitOfWork):
    """The fake unit of work, plus the durable timers the milestone handlers arm and disarm."""

    def __init__(self) -> None:
        super().__init__()
        self.timers: dict[str, dict] = {}

    async def schedule(self, timer_id, kind, subject, due_at, payload) -> None:
        self.timers.setdefault(timer_id, {"kind": kind, "subject": subject, "due_at": due_at, "cancelled": False})

    async def cancel_timers(self, subject, *kinds) -> None:
        for timer in self.timers.values():
            if timer["subject"] == subject and timer["kind"] in kinds:
                timer["cancelled"] = True


def account(account_id: str, role: str, status: str = "active", appealable: bool | None = None) -> Account:
    return Account(account_id, role, account_id.title(), f"{account_id}@example.test", status=status,
                   status_reason=None if status == "active" else "because", appealable=appealable,
                   last_activity_at=NOON - timedelta(days=1))


def context(*people: Account) -> FakeContext:
    return contracts_context(*people, uow=TimedUnitOfWork())


async def handle(ctx: FakeContext, handler, data: Message, actor: str, subject: str = "c-1") -> Envelope:
    command = new_envelope(data, subject=subject, actor=actor, source="tests")
    ctx.uow.cause = Cause.of(command)
    await ctx.uow.claim(command)
    ctx.envelope = command
    await handler(data, ctx)
    return command


async def refused(ctx: FakeContext, handler, data: Message, actor: str, subject: str = "c-1") -> str:
    with pytest.raises(Rejected) as rejection:
        await handle(ctx, handler, data, actor, subject)
    return rejection.value.reason_code


def contract_with(ctx: FakeContext, m1_status: str, status: str = domain.ACTIVE) -> Contract:
    contract = Contract("c-1", "client-1", "free-1", "Logo", "USD", "first_milestone", status, created_at=NOON)
    contract.milestones = [Milestone("m-1", "Sketches", 10_000, 0, status=m1_status, charge_id="charge-1"),
                           Milestone("m-2", "Final", 20_000, 1)]
    if m1_status == domain.SUBMITTED:
        contract.milestones[0].review_due_at = NOON + timedelta(days=14)
    ctx.contracts._rows[contract.contract_id] = contract  # noqa: SLF001 - seeding the fake
    return contract


# -- suspension and reactivation ------------------------------------------------------------------


async def test_an_administrator_suspends_an_account_with_a_reason_and_whether_it_may_appeal():
    ctx = context(account("client-1", "client"))
    command = await handle(ctx, accounts.suspend_account,
                           SuspendAccount(account_id="client-1", reason="chargebacks", appealable=True), ADMIN,
                           subject="client-1")
    stored = ctx.accounts.stored("client-1")
    assert (stored.status, stored.status_reason, stored.appealable) == ("suspended", "chargebacks", True)
    [event] = ctx.uow.messages()
    assert (event.type, event.subject, event.data["reason"], event.data["appealable"]) == \
        ("AccountSuspended", "client-1", "chargebacks", True)
    assert ctx.uow.status_of(command.id)["outcome"]["type"] == "AccountSuspended"


@pytest.mark.parametrize(("handler", "data"), [
    (accounts.suspend_account, SuspendAccount(account_id="client-1", reason="x", appealable=False)),
    (accounts.reactivate_account, ReactivateAccount(account_id="client-1")),
])
async def test_only_an_administrator_suspends_or_reactivates(handler, data):
    ctx = context(account("client-1", "client", "suspended", appealable=True))
    assert await refused(ctx, handler, data, "client-1", "client-1") == "forbidden"
    assert await refused(ctx, handler, data, "free-1", "client-1") == "forbidden"


async def test_suspending_an_unknown_account_is_not_found():
    ctx = context()
    assert await refused(ctx, accounts.suspend_account,
                         SuspendAccount(account_id="ghost", reason="x", appealable=True), ADMIN, "ghost") == "not_found"


# (status, appealable) -> the outcome of the holder's RequestReactivation, and the status afterwards
REACTIVATION = [
    ("inactive", None, "AccountReactivated", "active"),
    ("suspended", True, "ReactivationRequested", "suspended"),
    ("suspended", False, "ReactivationRefused", "suspended"),
]


@pytest.mark.parametrize(("status", "appealable", "outcome", "after"), REACTIVATION)
async def test_a_reactivation_request_is_granted_asked_of_an_administrator_or_refused(status, appealable, outcome,
                                                                                       after):
    ctx = context(account("free-1", "freelancer", status, appealable))
    command = await handle(ctx, accounts.request_reactivation, RequestReactivation(account_id="free-1"), "free-1",
                           "free-1")
    assert ctx.uow.types() == [outcome]
    assert ctx.accounts.stored("free-1").status == after
    assert ctx.uow.status_of(command.id)["outcome"]["type"] == outcome
    if outcome == "ReactivationRefused":
        assert ctx.uow.messages()[0].data["reason_code"] == "suspension_final"
    if outcome == "ReactivationRequested":
        assert ctx.accounts.stored("free-1").reactivation_requested


async def test_reactivation_is_asked_for_by_the_holder_only_and_not_for_an_active_account():
    ctx = context(account("free-1", "freelancer", "inactive"), account("client-1", "client"))
    assert await refused(ctx, accounts.request_reactivation, RequestReactivation(account_id="free-1"), "client-1",
                         "free-1") == "forbidden"
    assert await refused(ctx, accounts.request_reactivation, RequestReactivation(account_id="client-1"), "client-1",
                         "client-1") == "invalid_state"


async def test_an_administrator_reactivates_a_suspended_account():
    ctx = context(account("client-1", "client", "suspended", appealable=True))
    await handle(ctx, accounts.request_reactivation, RequestReactivation(account_id="client-1"), "client-1", "client-1")
    await handle(ctx, accounts.reactivate_account, ReactivateAccount(account_id="client-1"), ADMIN, "client-1")
    stored = ctx.accounts.stored("client-1")
    assert (stored.status, stored.status_reason, stored.appealable, stored.reactivation_requested) == \
        ("active", None, None, False)
    assert ctx.uow.types() == ["ReactivationRequested", "AccountReactivated"]
    assert await refused(ctx, accounts.reactivate_account, ReactivateAccount(account_id="client-1"), ADMIN,
                         "client-1") == "invalid_state"


# -- what a suspended or inactive account may not start ---------------------------------------------

NEXT = MilestoneSpec(milestone_id="m-3", title="More", amount=5_000)
# (who is not active, the command, its handler, the state of m-1 it needs, the actor)
GATED = [
    ("client", SendOffer(contract_id="c-9", client_id="client-1", freelancer_id="free-1", title="New", currency="USD",
                         milestones=[MilestoneSpec(milestone_id="m-9", title="One", amount=5_000)]),
     offers.send_offer, None, "client-1"),
    ("client", AddMilestone(contract_id="c-1", milestone_id="m-3", title="More", amount=5_000),
     milestones.add_milestone, domain.FUNDED, "client-1"),
    ("client", AddMilestone(contract_id="c-1", milestone_id="m-3", title="More", amount=5_000, fund_now=True),
     milestones.add_milestone, domain.FUNDED, "client-1"),
    ("client", ActivateMilestone(contract_id="c-1", milestone_id="m-2"),
     milestones.activate_milestone, domain.FUNDED, "client-1"),
    ("client", ApproveMilestone(contract_id="c-1", milestone_id="m-1", next_milestone=NEXT),
     milestones.approve_milestone, domain.SUBMITTED, "client-1"),
    ("freelancer", AcceptOffer(contract_id="c-1"), offers.accept_offer, domain.FUNDED, "free-1"),
    ("freelancer", SubmitWork(contract_id="c-1", milestone_id="m-1", message="done"),
     milestones.submit_work, domain.FUNDED, "free-1"),
]


@pytest.mark.parametrize("status", ["suspended", "inactive"])
@pytest.mark.parametrize(("role", "data", "handler", "m1_status", "actor"), GATED,
                         ids=[f"{g[0]}-{type(g[1]).__name__}{'-next' if getattr(g[1], 'next_milestone', None) else ''}"
                              f"{'-fund_now' if getattr(g[1], 'fund_now', False) else ''}" for g in GATED])
async def test_a_suspended_or_inactive_account_cannot_start_new_activity(status, role, data, handler, m1_status,
                                                                          actor):
    client = account("client-1", "client", status if role == "client" else "active", appealable=True)
    freelancer = account("free-1", "freelancer", status if role == "freelancer" else "active", appealable=True)
    ctx = context(client, freelancer)
    if m1_status:
        before = copy.deepcopy(contract_with(ctx, m1_status,
                                             domain.OFFERED if isinstance(data, AcceptOffer) else domain.ACTIVE))
    assert await refused(ctx, handler, data, actor) == "account_not_active"
    if m1_status:
        assert ctx.contracts.stored("c-1") == before, "a refused command changed the contract"


async def test_a_suspended_client_can_still_approve_work_and_the_money_is_released():
    ctx = context(account("client-1", "client", "suspended", appealable=False), account("free-1", "freelancer"))
    contract_with(ctx, domain.SUBMITTED)
    await handle(ctx, milestones.approve_milestone, ApproveMilestone(contract_id="c-1", milestone_id="m-1"),
                 "client-1")
    assert ctx.contracts.stored("c-1").milestone("m-1").status == domain.RELEASING
    assert ctx.uow.types() == ["MilestoneApproved", "ReleaseEscrow"]


async def test_a_suspended_client_can_still_cancel_and_get_the_escrow_back():
    ctx = context(account("client-1", "client", "suspended", appealable=False), account("free-1", "freelancer"))
    contract_with(ctx, domain.FUNDED)
    await handle(ctx, endings.cancel_contract, CancelContract(contract_id="c-1", reason="gone"), "client-1")
    assert ctx.contracts.stored("c-1").milestone("m-1").status == domain.REFUNDING
    assert ctx.uow.types() == ["RefundEscrow"]


async def test_a_suspended_freelancer_may_still_decline_an_offer_and_the_client_gets_the_deposit_back():
    ctx = context(account("client-1", "client"), account("free-1", "freelancer", "suspended", appealable=True))
    contract_with(ctx, domain.FUNDED, domain.OFFERED)
    await handle(ctx, offers.decline_offer, DeclineOffer(contract_id="c-1"), "free-1")
    assert ctx.contracts.stored("c-1").status == domain.DECLINED
    assert ctx.uow.types() == ["RefundEscrow"]


async def test_an_approval_with_a_next_milestone_from_an_active_client_is_accepted_whole():
    ctx = context(account("client-1", "client"), account("free-1", "freelancer"))
    contract_with(ctx, domain.SUBMITTED)
    await handle(ctx, milestones.approve_milestone,
                 ApproveMilestone(contract_id="c-1", milestone_id="m-1", next_milestone=NEXT), "client-1")
    release = ctx.uow.messages()[-1]
    assert release.type == "ReleaseEscrow"
    saga = ctx.sagas.all()[0]
    assert saga.data.then.next_milestone.milestone_id == "m-3"


async def test_a_next_milestone_with_keep_open_false_is_refused_as_invalid_data():
    ctx = context(account("client-1", "client"), account("free-1", "freelancer"))
    contract_with(ctx, domain.SUBMITTED)
    assert await refused(ctx, milestones.approve_milestone,
                         ApproveMilestone(contract_id="c-1", milestone_id="m-1", keep_open=False, next_milestone=NEXT),
                         "client-1") == "invalid_data"
