"""The fund saga, step by step (contracts/service_layer/sagas/fund.py), on fakes.

Given this saga and data, expect this command on this topic; given a failure reply, expect the
compensation or the failure. Each reply is handled as its own transaction, as in the service.
"""

from datetime import timedelta

import pytest
from platform_runtime.errors import Rejected
from platform_runtime.unit_of_work import Cause
from platform_schemas import Envelope, Message, new_envelope
from platform_schemas.choreography import hold_for
from platform_schemas.commands.contracts import MilestoneSpec, SendOffer
from platform_schemas.commands.saga import ChargeClient, HoldEscrow, RefundCharge
from platform_schemas.events.billing import ChargeFailed, ChargeRefunded, ClientCharged
from platform_schemas.events.escrow import EscrowFunded, EscrowHoldRejected
from platform_schemas.topics import BILLING_SAGA_COMMANDS, CONTRACTS_EVENTS, ESCROW_SAGA_COMMANDS

from contracts.domain.accounts import Account
from contracts.domain.contracts import Contract, Milestone
from contracts.domain.sagas import COMPLETED, FAILED, RUNNING, saga_id_for
from contracts.service_layer import offers
from contracts.service_layer.sagas import fund
from contracts.service_layer.sagas.replies import handle_reply
from tests.support.fakes import FakeContext, contracts_context

pytestmark = pytest.mark.unit

CLIENT = Account("client-1", "client", "Cleo Client", "cleo@example.test")
FREELANCER = Account("free-1", "freelancer", "Fred Freelancer", "fred@example.test")


def send_offer(deposit: str = "first_milestone", amounts=(50_000, 70_000, 30_000), **overrides) -> SendOffer:
    fields = dict(contract_id="c-1", client_id="client-1", freelancer_id="free-1", title="Brand identity",
                  currency="USD", deposit=deposit,
                  milestones=[MilestoneSpec(milestone_id=f"m-{i + 1}", title=f"Milestone {i + 1}", amount=a)
                              for i, a in enumerate(amounts)])
    return SendOffer(**{**fields, **overrides})


def envelope(data: Message, actor: str, subject: str = "c-1", source: str = "tests") -> Envelope:
    return new_envelope(data, subject=subject, actor=actor, source=source)


async def handle_command(ctx: FakeContext, cmd: SendOffer, actor: str = "client-1") -> Envelope:
    """Send the offer as the service would: the command is claimed in the inbox, then handled."""
    command = envelope(cmd, actor)
    ctx.uow.cause = Cause.of(command)
    await ctx.uow.claim(command)
    ctx.envelope = command
    await offers.send_offer(cmd, ctx)
    return command


async def reply(ctx: FakeContext, event: Message) -> None:
    """A participant's reply, routed to its saga as contracts' reply router does."""
    await ctx.uow.commit()  # what came before is committed; only this reply's messages stay queued
    ctx.envelope = envelope(event, "system", source="participant")
    ctx.uow.cause = Cause.of(ctx.envelope)
    await handle_reply(event, ctx)


def only(ctx: FakeContext, topic: str) -> Envelope:
    """The one message now queued; it must be on `topic`."""
    queued = ctx.uow.messages()
    assert len(queued) == 1, [e.type for e in queued]
    assert ctx.uow.outgoing[0].topic == topic
    return queued[0]


# -- replies, built from the step commands they answer ----------------------------------------


def charged(charge: ChargeClient) -> ClientCharged:
    return ClientCharged(charge_id=charge.charge_id, saga_id=charge.saga_id, contract_id=charge.contract_id,
                         client_id=charge.client_id, billing_method_id="card-1", amount=charge.amount,
                         currency=charge.currency, purpose=charge.purpose, milestones=charge.milestones,
                         gateway_reference="ch_1")


def charge_failed(charge: ChargeClient, reason_code: str, consecutive_failures: int = 1) -> ChargeFailed:
    return ChargeFailed(charge_id=charge.charge_id, saga_id=charge.saga_id, contract_id=charge.contract_id,
                        client_id=charge.client_id, amount=charge.amount, currency=charge.currency,
                        purpose=charge.purpose, reason_code=reason_code, message=f"it failed: {reason_code}",
                        consecutive_failures=consecutive_failures)


def escrow_funded(hold: HoldEscrow) -> EscrowFunded:
    return EscrowFunded(hold_id=hold.hold_id, saga_id=hold.saga_id, charge_id=hold.charge_id,
                        contract_id=hold.contract_id, client_id=hold.client_id, currency=hold.currency,
                        amount=sum(m.amount for m in hold.milestones), milestones=hold.milestones, postings=[])


def hold_rejected(hold: HoldEscrow) -> EscrowHoldRejected:
    return EscrowHoldRejected(hold_id=hold.hold_id, step_id=hold.hold_id, saga_id=hold.saga_id, charge_id=hold.charge_id,
                              contract_id=hold.contract_id, reason_code="currency_mismatch",
                              message="contract c-1 is held in EUR")


def refunded(refund: RefundCharge) -> ChargeRefunded:
    return ChargeRefunded(refund_id=refund.refund_id, charge_id=refund.charge_id, saga_id=refund.saga_id,
                          contract_id=refund.contract_id, client_id=refund.client_id, billing_method_id="card-1",
                          amount=refund.amount, currency=refund.currency)


# -- givens ---------------------------------------------------------------------------------


async def given_an_offer_being_charged(deposit: str = "first_milestone", *accounts: Account):
    ctx = contracts_context(*(accounts or (CLIENT, FREELANCER)))
    command = await handle_command(ctx, send_offer(deposit))
    charge = ChargeClient.model_validate(only(ctx, BILLING_SAGA_COMMANDS).data)
    return ctx, command, charge


async def given_an_offer_being_held(deposit: str = "first_milestone"):
    ctx, command, charge = await given_an_offer_being_charged(deposit)
    await reply(ctx, charged(charge))
    return ctx, command, hold_for(charged(charge))  # escrow holds on ClientCharged: the step's own HoldEscrow


async def given_a_charge_being_given_back():
    ctx, command, hold = await given_an_offer_being_held()
    await reply(ctx, hold_rejected(hold))
    refund = RefundCharge.model_validate(only(ctx, BILLING_SAGA_COMMANDS).data)
    return ctx, command, refund


def contract_of(ctx: FakeContext) -> Contract:
    return ctx.contracts.stored("c-1")


def statuses(ctx: FakeContext) -> list[str]:
    return [m.status for m in contract_of(ctx).milestones]


# -- step 1: charge -------------------------------------------------------------------------


async def test_sending_an_offer_asks_billing_to_charge_the_first_milestone():
    ctx, command, charge = await given_an_offer_being_charged()
    saga = ctx.sagas.all()[0]
    assert charge.charge_id == f"{saga.saga_id}:charge"
    assert (charge.saga_id, charge.contract_id, charge.client_id) == (saga.saga_id, "c-1", "client-1")
    assert (charge.amount, charge.currency, charge.purpose) == (50_000, "USD", "fixed_price")
    assert [(m.milestone_id, m.amount) for m in charge.milestones] == [("m-1", 50_000)]
    assert ctx.uow.messages()[0].subject == "c-1"  # keyed by the contract: in order with all else about it


async def test_while_the_charge_is_pending_the_contract_is_funding_and_nothing_is_announced():
    ctx, _, _ = await given_an_offer_being_charged()
    assert contract_of(ctx).status == "funding"
    assert statuses(ctx) == ["funding", "unfunded", "unfunded"]
    assert ctx.uow.messages(CONTRACTS_EVENTS) == []


async def test_an_all_milestones_deposit_charges_the_whole_contract_at_once():
    ctx, _, charge = await given_an_offer_being_charged("all_milestones")
    assert charge.amount == 150_000
    assert [m.milestone_id for m in charge.milestones] == ["m-1", "m-2", "m-3"]
    assert statuses(ctx) == ["funding", "funding", "funding"]


async def test_the_saga_is_named_after_the_command_that_started_it_so_a_redelivery_names_the_same_saga():
    ctx, command, _ = await given_an_offer_being_charged()
    saga = ctx.sagas.all()[0]
    assert saga.saga_id == saga_id_for("fund", command.id)
    assert (saga.status, saga.step, saga.command_id) == (RUNNING, "charge", command.id)


# -- step 2: hold ---------------------------------------------------------------------------


async def test_given_the_client_was_charged_expect_the_saga_to_wait_for_the_hold_escrow_takes_on_the_charge():
    ctx, _, hold = await given_an_offer_being_held()
    assert ctx.uow.messages() == []  # escrow read ClientCharged too; HoldEscrow goes only after the deadline
    saga = ctx.sagas.all()[0]
    assert hold.hold_id == f"{saga.saga_id}:hold"
    assert hold.charge_id == f"{saga.saga_id}:charge"
    assert (hold.contract_id, hold.client_id, hold.currency) == ("c-1", "client-1", "USD")
    assert [(m.milestone_id, m.amount) for m in hold.milestones] == [("m-1", 50_000)]
    assert (saga.step, saga.data.charge_id) == ("hold", hold.charge_id)


async def test_given_the_money_is_held_expect_milestone_funded_then_offer_sent():
    ctx, command, hold = await given_an_offer_being_held()
    await reply(ctx, escrow_funded(hold))
    assert ctx.uow.types(CONTRACTS_EVENTS) == ["MilestoneFunded", "OfferSent"]
    assert ctx.uow.types() == ctx.uow.types(CONTRACTS_EVENTS)
    funded, sent = ctx.uow.messages()
    assert funded.data == {"contract_id": "c-1", "milestone_id": "m-1", "amount": 50_000, "currency": "USD",
                           "charge_id": hold.charge_id}
    assert sent.data["deposited_amount"] == 50_000
    assert [m["milestone_id"] for m in sent.data["milestones"]] == ["m-1", "m-2", "m-3"]


async def test_once_the_money_is_held_the_contract_is_offered_and_the_command_completed():
    ctx, command, hold = await given_an_offer_being_held()
    await reply(ctx, escrow_funded(hold))
    assert contract_of(ctx).status == "offered"
    assert statuses(ctx) == ["funded", "unfunded", "unfunded"]
    assert contract_of(ctx).milestones[0].charge_id == hold.charge_id
    assert ctx.sagas.all()[0].status == COMPLETED
    assert ctx.uow.status_of(command.id)["status"] == "completed"
    assert ctx.uow.status_of(command.id)["outcome"] == {"type": "OfferSent"}


async def test_an_all_milestones_deposit_funds_every_milestone():
    ctx, _, hold = await given_an_offer_being_held("all_milestones")
    await reply(ctx, escrow_funded(hold))
    assert ctx.uow.types() == ["MilestoneFunded"] * 3 + ["OfferSent"]
    assert statuses(ctx) == ["funded"] * 3


async def test_a_later_milestone_funded_on_an_active_contract_announces_milestone_funded_only():
    ctx = contracts_context(CLIENT, FREELANCER)
    contract = Contract("c-1", "client-1", "free-1", "Brand identity", "USD", "first_milestone", "active",
                        [Milestone("m-1", "Logo", 50_000, 0, status="funding")])
    await ctx.contracts.save(contract, "test", ctx.now)
    await fund.fund_milestones(ctx, contract, contract.milestones, offer=False, command_id=None, started_by="activate-1")
    charge = ChargeClient.model_validate(only(ctx, BILLING_SAGA_COMMANDS).data)
    await reply(ctx, charged(charge))
    await reply(ctx, escrow_funded(hold_for(charged(charge))))
    assert ctx.uow.types() == ["MilestoneFunded"]
    assert (contract_of(ctx).status, statuses(ctx)) == ("active", ["funded"])


# -- failure before any money moved ---------------------------------------------------------


@pytest.mark.parametrize("reason_code", ["card_declined", "insufficient_funds", "no_primary_method"])
async def test_given_a_failed_charge_expect_offer_funding_failed_with_its_reason(reason_code):
    ctx, command, charge = await given_an_offer_being_charged()
    await reply(ctx, charge_failed(charge, reason_code))
    failed = only(ctx, CONTRACTS_EVENTS)
    assert failed.type == "OfferFundingFailed"
    assert (failed.data["reason_code"], failed.data["amount"], failed.data["currency"]) == (reason_code, 50_000, "USD")
    assert failed.data["message"] == f"it failed: {reason_code}"


async def test_after_a_failed_charge_no_offer_exists_and_the_saga_and_command_say_why():
    ctx, command, charge = await given_an_offer_being_charged("all_milestones")
    await reply(ctx, charge_failed(charge, "card_declined"))
    assert contract_of(ctx).status == "funding_failed"
    assert statuses(ctx) == ["unfunded"] * 3
    saga = ctx.sagas.all()[0]
    assert (saga.status, saga.step) == (FAILED, "done")
    assert ctx.uow.status_of(command.id)["outcome"]["type"] == "OfferFundingFailed"
    assert ctx.uow.status_of(command.id)["outcome"]["reason_code"] == "card_declined"


async def test_a_failed_later_milestone_announces_milestone_funding_failed_and_leaves_it_unfunded():
    ctx = contracts_context(CLIENT, FREELANCER)
    contract = Contract("c-1", "client-1", "free-1", "Brand identity", "USD", "first_milestone", "active",
                        [Milestone("m-1", "Logo", 50_000, 0, status="funding")])
    await ctx.contracts.save(contract, "test", ctx.now)
    await fund.fund_milestones(ctx, contract, contract.milestones, offer=False, command_id=None, started_by="activate-1")
    await reply(ctx, charge_failed(ChargeClient.model_validate(only(ctx, BILLING_SAGA_COMMANDS).data),
                                   "card_declined"))
    assert ctx.uow.types() == ["MilestoneFundingFailed"]
    assert (contract_of(ctx).status, statuses(ctx)) == ("active", ["unfunded"])


async def test_the_fifth_consecutive_failed_charge_suspends_the_client_automatically():
    ctx, _, charge = await given_an_offer_being_charged()
    await reply(ctx, charge_failed(charge, "card_declined", consecutive_failures=5))
    assert ctx.uow.types() == ["OfferFundingFailed", "AccountSuspended"]
    suspended = ctx.uow.messages()[1]
    assert (suspended.subject, suspended.actor, suspended.data["automatic"]) == ("client-1", "system", True)
    assert ctx.accounts.stored("client-1").status == "suspended"


async def test_the_fourth_consecutive_failed_charge_does_not_suspend_the_client():
    ctx, _, charge = await given_an_offer_being_charged()
    await reply(ctx, charge_failed(charge, "card_declined", consecutive_failures=4))
    assert ctx.uow.types() == ["OfferFundingFailed"]
    assert ctx.accounts.stored("client-1").status == "active"


# -- failure after the charge: compensation -------------------------------------------------


async def test_given_escrow_refuses_the_hold_expect_the_charge_given_back():
    ctx, command, refund = await given_a_charge_being_given_back()
    saga = ctx.sagas.all()[0]
    assert refund.refund_id == f"{saga.saga_id}:compensate"
    assert refund.charge_id == f"{saga.saga_id}:charge"
    assert (refund.amount, refund.currency, refund.contract_id, refund.client_id) == (50_000, "USD", "c-1", "client-1")
    assert saga.step == "compensate"


async def test_while_the_charge_is_given_back_nothing_is_announced_yet():
    ctx, command, _ = await given_a_charge_being_given_back()
    assert ctx.uow.messages(CONTRACTS_EVENTS) == []
    assert contract_of(ctx).status == "funding"
    assert ctx.uow.status_of(command.id)["status"] == "accepted"


async def test_given_the_charge_was_refunded_expect_offer_funding_failed_with_escrows_reason():
    ctx, command, refund = await given_a_charge_being_given_back()
    await reply(ctx, refunded(refund))
    failed = only(ctx, CONTRACTS_EVENTS)
    assert (failed.type, failed.data["reason_code"]) == ("OfferFundingFailed", "currency_mismatch")
    assert "refunded" in failed.data["message"]
    assert contract_of(ctx).status == "funding_failed"
    assert ctx.sagas.all()[0].status == FAILED
    assert ctx.uow.status_of(command.id)["outcome"]["reason_code"] == "currency_mismatch"


# -- replies that arrive twice or out of turn -----------------------------------------------


async def test_a_redelivered_client_charged_asks_for_no_second_hold():
    ctx, _, charge = await given_an_offer_being_charged()
    await reply(ctx, charged(charge))
    await reply(ctx, charged(charge))
    assert ctx.uow.messages() == []


async def test_a_reply_for_a_later_step_is_ignored_while_the_saga_waits_for_an_earlier_one():
    ctx, _, charge = await given_an_offer_being_charged()
    await reply(ctx, refunded(RefundCharge(refund_id="x:compensate", charge_id=charge.charge_id,
                                           saga_id=charge.saga_id, contract_id="c-1", client_id="client-1",
                                           amount=50_000, currency="USD", description="x")))
    assert ctx.uow.messages() == []
    assert ctx.sagas.all()[0].step == "charge"


async def test_escrows_hold_read_before_billings_charge_funds_the_offer_and_the_late_charge_changes_nothing():
    """Escrow answers ClientCharged from billing.events; contracts may read escrow's answer first."""
    ctx, command, charge = await given_an_offer_being_charged()
    await reply(ctx, escrow_funded(hold_for(charged(charge))))
    assert ctx.uow.types(CONTRACTS_EVENTS) == ["MilestoneFunded", "OfferSent"]
    saga = ctx.sagas.all()[0]
    assert (saga.status, saga.data.charge_id) == (COMPLETED, charge.charge_id)
    await reply(ctx, charged(charge))
    assert ctx.uow.messages() == []
    assert ctx.sagas.all()[0].step_log == saga.step_log


async def test_escrows_refusal_read_before_billings_charge_gives_the_charge_back():
    ctx, command, charge = await given_an_offer_being_charged()
    await reply(ctx, hold_rejected(hold_for(charged(charge))))
    refund = RefundCharge.model_validate(only(ctx, BILLING_SAGA_COMMANDS).data)
    assert (refund.charge_id, refund.amount, refund.client_id) == (charge.charge_id, 50_000, "client-1")
    await reply(ctx, charged(charge))
    assert ctx.uow.messages() == []
    assert ctx.sagas.all()[0].step == "compensate"


async def test_a_late_failure_reply_does_not_undo_a_completed_saga():
    ctx, _, hold = await given_an_offer_being_held()
    await reply(ctx, escrow_funded(hold))
    charge = ChargeClient(charge_id=hold.charge_id, saga_id=hold.saga_id, contract_id="c-1", client_id="client-1",
                          amount=50_000, currency="USD", description="x")
    await reply(ctx, charge_failed(charge, "card_declined"))
    await reply(ctx, hold_rejected(hold))
    await reply(ctx, escrow_funded(hold))
    assert ctx.uow.messages() == []
    assert contract_of(ctx).status == "offered"


# -- what a SendOffer must be before the saga starts ----------------------------------------


async def rejected(cmd: SendOffer, actor: str = "client-1", *accounts: Account, existing: Contract | None = None):
    ctx = contracts_context(*(accounts or (CLIENT, FREELANCER)))
    if existing:
        await ctx.contracts.save(existing, "test", ctx.now)
    with pytest.raises(Rejected) as refusal:
        await handle_command(ctx, cmd, actor)
    assert ctx.uow.messages() == [] and ctx.sagas.all() == []
    assert ctx.contracts.stored(cmd.contract_id) == existing  # nothing saved
    return refusal.value.reason_code


async def test_an_offer_sent_by_someone_other_than_its_client_is_forbidden():
    assert await rejected(send_offer(), actor="free-1") == "forbidden"


async def test_an_offer_from_a_freelancer_account_is_forbidden():
    assert await rejected(send_offer(client_id="free-1", freelancer_id="client-1"), actor="free-1") == "forbidden"


async def test_an_offer_to_an_unknown_freelancer_is_not_found():
    assert await rejected(send_offer(freelancer_id="nobody")) == "not_found"


async def test_an_offer_from_a_suspended_client_is_refused_as_account_not_active():
    suspended = Account("client-1", "client", "Cleo", "cleo@example.test", status="suspended")
    assert await rejected(send_offer(), "client-1", suspended, FREELANCER) == "account_not_active"


@pytest.mark.parametrize("amount", [499, 100_000_001, 0, -500])
async def test_a_milestone_amount_outside_the_limits_is_refused(amount):
    assert await rejected(send_offer(amounts=(50_000, amount))) == "amount_out_of_range"


async def test_a_contract_id_is_never_reused():
    failed = Contract("c-1", "client-1", "free-1", "Old", "USD", "first_milestone", "funding_failed", [])
    assert await rejected(send_offer(), existing=failed) == "id_taken"


async def test_milestone_ids_already_used_elsewhere_are_refused():
    other = Contract("c-0", "client-1", "free-1", "Old", "USD", "first_milestone", "offered",
                     [Milestone("m-2", "Taken", 50_000, 0)])
    ctx = contracts_context(CLIENT, FREELANCER)
    await ctx.contracts.save(other, "test", ctx.now)
    with pytest.raises(Rejected) as refusal:
        await handle_command(ctx, send_offer())
    assert refusal.value.reason_code == "id_taken" and "m-2" in refusal.value.message


async def test_an_offer_with_the_same_milestone_id_twice_is_invalid():
    cmd = send_offer(milestones=[MilestoneSpec(milestone_id="m-1", title="A", amount=50_000),
                                 MilestoneSpec(milestone_id="m-1", title="B", amount=50_000)])
    assert await rejected(cmd) == "invalid_data"


async def test_the_limits_are_settings():
    ctx = contracts_context(CLIENT, FREELANCER)
    ctx.settings = ctx.settings.model_copy(update={"milestone_min_amount": 60_000})
    with pytest.raises(Rejected) as refusal:
        await handle_command(ctx, send_offer())
    assert refusal.value.reason_code == "amount_out_of_range"


async def test_sending_an_offer_counts_as_activity_of_the_client():
    ctx = contracts_context(CLIENT, FREELANCER)
    ctx.uow.clock.advance(timedelta(hours=1))
    await handle_command(ctx, send_offer())
    assert ctx.accounts.stored("client-1").last_activity_at == ctx.now


def test_a_client_cannot_hire_themselves():
    with pytest.raises(Rejected) as refusal:
        Contract.offer("c-1", "client-1", "client-1", "t", "USD", "first_milestone",
                       [Milestone("m-1", "t", 50_000, 0)], now=None)
    assert refusal.value.reason_code == "invalid_data"
