"""Operators' commands on their own topics (issue 12, item 2), through the real services: an admin-only command on
an integrator topic, an `admin:` actor anywhere but the admin topics, anything else on an admin topic, and `system`
on any command topic are all refused `forbidden` by the consuming service, with nothing done; the operators'
commands on the admin topics go through (every test's set-up registers its accounts there)."""

import asyncio
from datetime import date

import pytest
from platform_runtime.client import new_id
from platform_schemas.commands.billing import AddBillingMethod, RetryRefund, RunBonusBatch
from platform_schemas.commands.contracts import (
    AcceptOffer, MilestoneSpec, RegisterAccount, RequestReactivation, ResolveDispute, SendOffer, SuspendAccount,
)
from platform_schemas.topics import (
    BILLING_ADMIN_COMMANDS, BILLING_COMMANDS, CONTRACTS_ADMIN_COMMANDS, CONTRACTS_COMMANDS,
)

from tests.support.lifecycle import Platform, lifecycle, money_checked  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e
ADMIN = "admin:tests"


async def refused_by(p: Platform, data, actor: str, topic: str, subject: str | None = None) -> tuple[str, str, str]:
    """(reason code, the service that refused, the command's status on that service's read side)."""
    command = await p.send(data, actor, subject, topic)
    outcome = await p.outcome(command, set())
    status = await p.client.get_json(outcome.source, f"/commands/{command.id}")
    return outcome.data["reason_code"], outcome.source, status["status"]


async def test_admin_commands_and_admin_actors_only_on_the_admin_topics(lifecycle: Platform):
    p = lifecycle
    people = await p.parties()
    newcomer = new_id("client")
    day = date(2000, 1, 2)  # no other test runs a batch for it
    batch = f"bonus-batch-{day}"
    offer = SendOffer(contract_id=new_id("contract"), client_id=people.client_id, freelancer_id=people.freelancer_id,
                      title="Logo", currency="USD",
                      milestones=[MilestoneSpec(milestone_id="m-1", title="One", amount=10_000)])
    card = AddBillingMethod(account_id=people.client_id, billing_method_id=new_id("card"), kind="card",
                            token="tok_visa")
    cases = {
        # an admin-only command on an integrator topic, even from an admin
        "RegisterAccount on contracts.commands": (RegisterAccount(
            account_id=newcomer, role="client", name="Nobody", email="n@example.test"), ADMIN, CONTRACTS_COMMANDS),
        "SuspendAccount on contracts.commands": (SuspendAccount(
            account_id=people.client_id, reason="x", appealable=True), ADMIN, CONTRACTS_COMMANDS),
        "ResolveDispute on contracts.commands": (ResolveDispute(
            contract_id=offer.contract_id, milestone_id="m-1", release_amount=1, refund_amount=0), ADMIN,
            CONTRACTS_COMMANDS),
        "RunBonusBatch on billing.commands": (RunBonusBatch(business_date=day), ADMIN, BILLING_COMMANDS,
                                              batch),
        "RetryRefund on billing.commands": (RetryRefund(refund_id="refund-none"), ADMIN, BILLING_COMMANDS,
                                            people.client_id),
        # an admin: actor on an integrator topic, with an account's command
        "AcceptOffer by admin on contracts.commands": (AcceptOffer(contract_id=offer.contract_id), ADMIN,
                                                       CONTRACTS_COMMANDS),
        "AddBillingMethod by admin on billing.commands": (card, ADMIN, BILLING_COMMANDS),
        # an account's command on an admin topic, even from the right account
        "SendOffer on contracts.admin-commands": (offer, people.client_id, CONTRACTS_ADMIN_COMMANDS),
        "RequestReactivation on contracts.admin-commands": (RequestReactivation(account_id=people.client_id),
                                                            people.client_id, CONTRACTS_ADMIN_COMMANDS),
        "AddBillingMethod on billing.admin-commands": (card, people.client_id, BILLING_ADMIN_COMMANDS),
        # an admin command from an account or from system on an admin topic
        "RegisterAccount by an account on contracts.admin-commands": (RegisterAccount(
            account_id=newcomer, role="client", name="Nobody", email="n@example.test"), people.client_id,
            CONTRACTS_ADMIN_COMMANDS),
        "RegisterAccount by system on contracts.admin-commands": (RegisterAccount(
            account_id=newcomer, role="client", name="Nobody", email="n@example.test"), "system",
            CONTRACTS_ADMIN_COMMANDS),
        "RunBonusBatch by system on billing.admin-commands": (RunBonusBatch(business_date=day), "system",
                                                              BILLING_ADMIN_COMMANDS, batch),
    }
    results = await asyncio.gather(*(refused_by(p, data, actor, topic, *subject)
                                      for data, actor, topic, *subject in cases.values()))
    got = dict(zip(cases, results))
    for name, (data, actor, topic, *_) in cases.items():
        owner = "billing" if topic.startswith("billing.") else "contracts"
        assert got[name] == ("forbidden", owner, "rejected"), f"{name}: {got[name]}"

    # nothing was done: no account registered, the client not suspended, no batch run
    assert (await p.client.get("contracts", f"/accounts/{newcomer}")).status_code == 404
    assert (await p.account(people.client_id))["status"] == "active"
    assert (await p.client.get("billing", f"/bonus-batches/{day}")).status_code == 404
    assert not p.client.of_type("AccountRegistered", account_id=newcomer)


async def test_an_operators_command_on_its_admin_topic_goes_through(lifecycle: Platform):
    p = lifecycle
    people = await p.parties()
    await p.do(SuspendAccount(account_id=people.freelancer_id, reason="Checks", appealable=True), ADMIN,
               "AccountSuspended")
    assert (await p.account(people.freelancer_id))["status"] == "suspended"
