"""Notifications' rules at the domain level: who is told what, amounts for people, every template, retries."""

import json
from datetime import date, datetime, timedelta, timezone
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from notifications.adapters.smtp import build_email, is_permanent
from notifications.adapters.templates import Templates
from notifications.domain.delivery import RetryPolicy, message_id, notification_id
from notifications.domain.money import format_amount
from notifications.domain.routing import KINDS, RULES, Parties, RecipientUnknown, notices_for
from notifications.adapters.repository import Known, values_as_json
from notifications.domain.names import names_for, names_given
from notifications.service_layer.handlers import EVENT_TYPES, template_values
from notifications.settings import TEMPLATES
from platform_schemas import registry
from platform_schemas.events import billing as b
from platform_schemas.events import contracts as c

pytestmark = pytest.mark.unit

CLIENT, FREELANCER, CONTRACT, MS = "client-1", "freelancer-1", "contract-1", "ms-1"
ADMINS = "administrators"
DUE = datetime(2026, 12, 10, 14, 0, tzinfo=timezone.utc)
PARTIES = Parties(CONTRACT, CLIENT, FREELANCER, "USD", "Brand identity")
ids = {"contract_id": CONTRACT, "client_id": CLIENT, "freelancer_id": FREELANCER}
money = {"amount": 150000, "currency": "USD"}

# One realistic instance of every event someone is told about (built from the wire models, so a
# renamed field breaks this test, not a person's email).
SAMPLES = {
    "OfferSent": c.OfferSent(**ids, title="Brand identity", currency="USD", deposit="first_milestone",
                             deposited_amount=150000, milestones=[
                                 c.MilestoneTerms(milestone_id=MS, title="Logo", amount=150000,
                                                  due_date=date(2026, 12, 24)),
                                 c.MilestoneTerms(milestone_id="ms-2", title="Guide", amount=70000)]),
    "OfferFundingFailed": c.OfferFundingFailed(**ids, **money, reason_code="card_declined",
                                               message="Your card was declined."),
    "ContractStarted": c.ContractStarted(**ids, currency="USD"),
    "OfferDeclined": c.OfferDeclined(**ids, reason="Too busy", refunded_amount=150000, currency="USD"),
    "OfferWithdrawn": c.OfferWithdrawn(**ids, refunded_amount=150000, currency="USD"),
    "WorkSubmitted": c.WorkSubmitted(
        **ids, milestone_id=MS, message="Logo <v2> attached", review_due_at=DUE,
        review_reminder_at=DUE - timedelta(days=2),
        client_upcoming=[c.UpcomingItem(kind="auto_release", at=DUE, contract_id=CONTRACT, milestone_id=MS, **money,
                                        reminder_at=DUE - timedelta(days=2)),
                         c.UpcomingItem(kind="bonus_charge", at=DUE + timedelta(days=1), amount=3_800,
                                        currency="USD", bonuses=3)],
        freelancer_upcoming=[c.UpcomingItem(kind="earning_available", at=DUE - timedelta(days=1),
                                            contract_id=CONTRACT, milestone_id="ms-0", amount=90_000,
                                            currency="USD"),
                             c.UpcomingItem(kind="auto_release", at=DUE, contract_id=CONTRACT, milestone_id=MS,
                                            **money, reminder_at=DUE - timedelta(days=2))]),
    "ChangesRequested": c.ChangesRequested(**ids, milestone_id=MS, message="Make it bluer"),
    "ReviewPeriodEndingSoon": c.ReviewPeriodEndingSoon(contract_id=CONTRACT, milestone_id=MS, client_id=CLIENT,
                                                       review_due_at=DUE),
    "MilestonePaid": c.MilestonePaid(**ids, milestone_id=MS, **money, automatic=True),
    "BonusPaid": b.BonusPaid(**ids, **money, business_date=date(2026, 11, 25), bonus_id="bonus-1",
                             charge_id="charge-1"),
    "BonusFailed": b.BonusFailed(**ids, **money, business_date=date(2026, 11, 25), bonus_id="bonus-1",
                                 reason_code="card_declined", message="Your card was declined."),
    "PastDueBalanceChanged": b.PastDueBalanceChanged(client_id="client-1", currency="USD", amount=2_500,
                                                     previous_amount=0, retry_until=date(2026, 12, 2),
                                                     reason_code="card_declined", message="Your card was declined."),
    "RefundRequested": c.RefundRequested(contract_id=CONTRACT, milestone_id=MS, freelancer_id=FREELANCER, **money,
                                         respond_by=DUE),
    "MilestoneRefunded": c.MilestoneRefunded(contract_id=CONTRACT, milestone_id=MS, client_id=CLIENT, **money),
    "DisputeOpened": c.DisputeOpened(**ids, milestone_id=MS, **money, resolve_by=DUE),
    "DisputeOverdue": c.DisputeOverdue(**ids, milestone_id=MS, **money, opened_at=DUE - timedelta(days=30),
                                       resolve_by=DUE),
    "MilestoneFundingFailed": c.MilestoneFundingFailed(contract_id=CONTRACT, milestone_id=MS, **money,
                                                       reason_code="no_primary_method",
                                                       message="client-1 has no primary billing method"),
    "AccountMarkedInactive": c.AccountMarkedInactive(account_id=FREELANCER, last_activity_at=DUE),
    "DisputeResolved": c.DisputeResolved(contract_id=CONTRACT, milestone_id=MS, release_amount=100000,
                                         refund_amount=50000, currency="USD", resolved_by="admin:ann"),
    "ContractEnded": c.ContractEnded(**ids, ended_by=FREELANCER, refunded_amount=70000, currency="USD"),
    "ContractCancelled": c.ContractCancelled(**ids, reason="Project stopped", refunded_amount=150000,
                                             released_amount=20000, currency="USD"),
    "AccountSuspended": c.AccountSuspended(account_id=CLIENT, reason="Chargeback fraud", appealable=False),
    "ReactivationRequested": c.ReactivationRequested(account_id=CLIENT),
    "AccountReactivated": c.AccountReactivated(account_id=CLIENT),
    "ReactivationRefused": c.ReactivationRefused(account_id=CLIENT, reason_code="suspension_final",
                                                 message="the suspension is final"),
}

# event -> (kind, recipients), written out by hand: the product's list of who hears what.
EXPECTED = {
    "OfferSent": ("offer_received", [FREELANCER]),
    "OfferFundingFailed": ("offer_funding_failed", [CLIENT]),
    "ContractStarted": ("offer_accepted", [CLIENT]),
    "OfferDeclined": ("offer_declined", [CLIENT]),
    "OfferWithdrawn": ("offer_withdrawn", [FREELANCER]),
    "WorkSubmitted": ("work_submitted", [CLIENT, FREELANCER]),
    "ChangesRequested": ("changes_requested", [FREELANCER]),
    "ReviewPeriodEndingSoon": ("review_reminder", [CLIENT]),
    "MilestonePaid": ("payment_released", [FREELANCER, CLIENT]),
    "BonusPaid": ("bonus_received", [FREELANCER]),
    "BonusFailed": ("bonus_charge_failed", [CLIENT]),
    "PastDueBalanceChanged": ("past_due_balance", [CLIENT]),
    "RefundRequested": ("refund_requested", [FREELANCER]),
    "MilestoneRefunded": ("refund_completed", [CLIENT]),
    "DisputeOpened": ("dispute_opened", [FREELANCER, CLIENT, ADMINS]),
    "DisputeOverdue": ("dispute_overdue", [FREELANCER, CLIENT, ADMINS]),
    "MilestoneFundingFailed": ("milestone_funding_failed", [CLIENT]),
    "AccountMarkedInactive": ("account_marked_inactive", [FREELANCER]),
    "DisputeResolved": ("dispute_resolved", [FREELANCER, CLIENT]),
    "ContractEnded": ("contract_ended", [FREELANCER, CLIENT]),
    "ContractCancelled": ("contract_cancelled", [FREELANCER, CLIENT]),
    "AccountSuspended": ("account_suspended", [CLIENT]),
    "ReactivationRequested": ("reactivation_requested", [CLIENT, ADMINS]),
    "AccountReactivated": ("account_reactivated", [CLIENT]),
    "ReactivationRefused": ("reactivation_refused", [CLIENT]),
}


def data(event_type: str) -> dict:
    return SAMPLES[event_type].model_dump(mode="python")


# -- routing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("event_type", sorted(EXPECTED))
def test_each_event_tells_the_right_people_the_right_kind(event_type):
    notices = notices_for(event_type, data(event_type), PARTIES)
    kind, recipients = EXPECTED[event_type]
    assert [(n.kind, n.account_id) for n in notices] == [(kind, r) for r in recipients]


def test_the_routing_table_covers_exactly_the_product_list():
    assert set(RULES) == set(EXPECTED)
    assert len(KINDS) == 25


def test_every_routed_event_is_a_registered_wire_event_and_is_consumed():
    for event_type in RULES:
        assert registry.model_for(event_type, 1) is not None, event_type
        assert event_type in EVENT_TYPES


@pytest.mark.parametrize("event_type", ["OfferSent", "ContractStarted", "MilestonePaid", "BonusGiven",
                                        "MilestoneFunded", "EscrowReleased", "AccountRegistered"])
def test_events_nobody_needs_to_hear_about_notify_no_one_twice(event_type):
    notices = notices_for(event_type, data(event_type), PARTIES) if event_type in SAMPLES else \
        notices_for(event_type, {"contract_id": CONTRACT}, PARTIES)
    assert len({(n.account_id, n.kind) for n in notices}) == len(notices)
    if event_type not in RULES:
        assert notices == []


def test_an_event_naming_only_its_contract_finds_both_parties_in_the_projection():
    notices = notices_for("DisputeResolved", data("DisputeResolved"), PARTIES)
    assert {n.account_id for n in notices} == {CLIENT, FREELANCER}
    assert notices[0].facts["contract_title"] == "Brand identity"
    assert {n.party for n in notices} == {"client", "freelancer"}


def test_an_event_naming_only_an_unknown_contract_has_no_recipient():
    with pytest.raises(RecipientUnknown):
        notices_for("DisputeResolved", data("DisputeResolved"), None)


def test_ids_in_the_event_win_over_the_projection():
    stale = Parties(CONTRACT, "someone-else", "another", "USD")
    assert [n.account_id for n in notices_for("MilestonePaid", data("MilestonePaid"), stale)] == [FREELANCER, CLIENT]


# -- money ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("amount, currency, shown", [
    (150000, "USD", "1,500.00 USD"),
    (500, "EUR", "5.00 EUR"),
    (5, "GBP", "0.05 GBP"),
    (0, "USD", "0.00 USD"),
    (100_000_000, "GBP", "1,000,000.00 GBP"),
    (123456789, "EUR", "1,234,567.89 EUR"),
    (-2550, "USD", "-25.50 USD"),
])
def test_amounts_are_shown_with_two_decimals_thousands_separators_and_the_currency(amount, currency, shown):
    assert format_amount(amount, currency) == shown


# -- templates ------------------------------------------------------------------------------------
def render_context(event_type: str, party: str) -> dict:
    facts = {**ids, "contract_title": "Brand identity", **data(event_type)}
    return {**facts, "party": party, "recipient_id": CLIENT if party == "client" else FREELANCER,
            "recipient_name": "Ann", "contract_label": "Brand identity", "milestone_label": "Logo",
            "client_name": "Carla Client", "freelancer_name": "Fred Freelancer", "account_name": "Carla Client"}


def test_every_kind_has_a_subject_a_text_and_an_html_template():
    for kind in KINDS:
        for part in ("subject", "txt", "html"):
            assert (Path(TEMPLATES) / f"{kind}.{part}.j2").is_file(), f"{kind}.{part}.j2"


@pytest.mark.parametrize("event_type", sorted(EXPECTED))
def test_every_template_renders_with_sample_data(event_type):
    templates = Templates(TEMPLATES)
    for notice in notices_for(event_type, data(event_type), PARTIES):
        rendered = templates.render(notice.kind, render_context(event_type, notice.party))
        assert rendered.subject and "\n" not in rendered.subject
        assert rendered.text.startswith("Hi Ann,")
        assert "<html" in rendered.html and "Hi Ann," in rendered.html
        assert "None" not in rendered.subject + rendered.text, rendered.text


def render(event_type: str, party: str = "client"):
    kind = RULES[event_type][0]
    return Templates(TEMPLATES).render(kind, render_context(event_type, party))


def test_offer_received_shows_amounts_with_their_currency_and_the_milestones():
    rendered = render("OfferSent", "freelancer")
    assert "Carla Client" in rendered.subject and "Brand identity" in rendered.subject
    assert "2,200.00 USD in total" in rendered.text
    assert "1,500.00 USD is already held in escrow" in rendered.text
    assert "- Logo: 1,500.00 USD, due 24 Dec 2026" in rendered.text and "- Guide: 700.00 USD" in rendered.text


def test_funding_failure_tells_the_client_the_reason_and_the_amount():
    rendered = render("OfferFundingFailed")
    assert "1,500.00 USD" in rendered.text and "Your card was declined." in rendered.text
    assert "card_declined" in rendered.text


def test_work_submitted_tells_the_auto_release_date_and_the_message():
    rendered = render("WorkSubmitted")
    assert "10 Dec 2026, 14:00 UTC" in rendered.subject and "10 Dec 2026, 14:00 UTC" in rendered.text
    assert "Logo <v2> attached" in rendered.text
    assert "Logo &lt;v2&gt; attached" in rendered.html  # HTML is escaped, plain text is not


def test_payment_released_says_whether_it_was_automatic_from_each_side():
    freelancer, client = render("MilestonePaid", "freelancer"), render("MilestonePaid", "client")
    assert "1,500.00 USD auto-released to you" in freelancer.subject
    assert "automatically" in freelancer.text and "Fred Freelancer" in client.subject
    manual = Templates(TEMPLATES).render("payment_released",
                                         {**render_context("MilestonePaid", "client"), "automatic": False})
    assert "auto" not in manual.subject and "after your approval" in manual.text


def test_refund_request_tells_the_deadline():
    assert "10 Dec 2026, 14:00 UTC" in render("RefundRequested", "freelancer").text


def test_suspension_tells_the_reason_and_whether_it_can_be_reversed():
    final = render("AccountSuspended")
    assert "Chargeback fraud" in final.text and "cannot be reversed" in final.text
    appealable = Templates(TEMPLATES).render("account_suspended",
                                             {**render_context("AccountSuspended", "account"), "appealable": True})
    assert "can be reversed" in appealable.text and "cannot" not in appealable.text


def test_dispute_resolution_shows_both_amounts():
    text = render("DisputeResolved", "freelancer").text
    assert "released to you: 1,000.00 USD" in text and "refunded to Carla Client: 500.00 USD" in text


def test_contract_cancelled_shows_reason_and_amounts():
    text = render("ContractCancelled", "client").text
    assert "Project stopped" in text and "1,500.00 USD" in text and "200.00 USD" in text


# -- delivery -------------------------------------------------------------------------------------
def test_a_notification_id_is_stable_per_event_person_and_channel():
    assert notification_id("e-1", CLIENT, "email") == notification_id("e-1", CLIENT, "email")
    assert len({notification_id("e-1", CLIENT, "email"), notification_id("e-1", CLIENT, "in_app"),
                notification_id("e-2", CLIENT, "email"), notification_id("e-1", FREELANCER, "email")}) == 4


def test_the_message_id_is_derived_from_the_notification_id():
    nid = notification_id("e-1", CLIENT, "email")
    email = build_email({"notification_id": nid, "subject": "Hi", "kind": "offer_received", "body_text": "t\n",
                         "body_html": "<p>t</p>"}, {"name": "Ann", "email": "ann@example.test"},
                        "Platform <n@example.test>", DUE)
    read = BytesParser(policy=policy.default).parsebytes(email.data)
    assert read["Message-ID"] == message_id(nid) == f"<{nid}@notifications.escrow-platform>"
    assert read["To"] == "Ann <ann@example.test>"
    assert read.get_body(("html",)).get_content().strip() == "<p>t</p>"


def test_failed_deliveries_back_off_exponentially_up_to_a_cap_then_give_up():
    policy = RetryPolicy(max_attempts=8, backoff=timedelta(seconds=10), max_backoff=timedelta(minutes=1))
    waits = [policy.next_attempt_at(n, DUE) - DUE for n in range(1, 8)]
    assert waits == [timedelta(seconds=s) for s in (10, 20, 40, 60, 60, 60, 60)]
    assert policy.next_attempt_at(8, DUE) is None
    assert policy.next_attempt_at(1, DUE, permanent=True) is None


def test_only_a_5xx_answer_counts_as_permanent():
    import smtplib

    assert is_permanent(smtplib.SMTPRecipientsRefused({"a@x": (550, b"no such user")}))
    assert not is_permanent(smtplib.SMTPRecipientsRefused({"a@x": (451, b"try later")}))
    assert not is_permanent(ConnectionRefusedError())
    assert not is_permanent(smtplib.SMTPServerDisconnected())


def test_a_failed_milestone_funding_tells_the_client_the_reason_and_what_to_do():
    rendered = render("MilestoneFundingFailed")
    assert "Logo" in rendered.subject
    assert "1,500.00 USD" in rendered.text and "no_primary_method" in rendered.text
    assert "Add a billing method and make it primary, then activate the milestone again." in rendered.text


def test_an_inactive_account_is_told_since_when_and_how_to_reactivate():
    rendered = render("AccountMarkedInactive", "account")
    assert "10 Dec 2026, 14:00 UTC" in rendered.text and "ask for reactivation" in rendered.text
    assert "reactivated at once" in rendered.html


@pytest.mark.parametrize("event_type", ["DisputeOpened", "DisputeOverdue", "ReactivationRequested"])
def test_administrators_are_told_of_what_waits_in_their_queues(event_type):
    assert ADMINS in [n.account_id for n in notices_for(event_type, data(event_type), PARTIES)]
    rendered = render(event_type, "administrators")
    assert "queue" in rendered.text or "resolve it" in rendered.text
    assert "Carla Client" in rendered.subject + rendered.text


def test_an_overdue_dispute_tells_the_parties_nothing_moves_by_itself():
    rendered = render("DisputeOverdue", "freelancer")
    assert "nothing moves by itself" in rendered.text and "1,500.00 USD" in rendered.text


def test_a_submission_tells_each_party_what_is_coming_up():
    to_client, to_freelancer = render("WorkSubmitted", "client"), render("WorkSubmitted", "freelancer")
    assert "we remind you on 08 Dec 2026, 14:00 UTC" in to_client.text
    assert "- 10 Dec 2026, 14:00 UTC: 1,500.00 USD released automatically (you are reminded 08 Dec 2026" \
        in to_client.text
    assert "- 11 Dec 2026, 14:00 UTC: your bonuses (3) are charged: 38.00 USD" in to_client.text
    assert "Coming up for you" in to_client.html
    assert "the payment is released to you automatically on 10 Dec 2026, 14:00 UTC" in to_freelancer.text
    assert "- 09 Dec 2026, 14:00 UTC: 900.00 USD of your earnings becomes available" in to_freelancer.text
    assert "bonuses (3)" not in to_freelancer.text


# Whose names a notification gives and lacks (domain/names.py): one row per way a person can be named.
NAMES_KNOWN = {CLIENT: "Carla Client", FREELANCER: "Fred Freelancer"}


@pytest.mark.parametrize("values, fields, unknown", [
    ({"recipient_id": CLIENT, "client_id": CLIENT, "freelancer_id": FREELANCER},
     {"recipient_name": "Carla Client", "client_name": "Carla Client", "freelancer_name": "Fred Freelancer",
      "account_name": ""}, []),
    ({"recipient_id": FREELANCER, "client_id": "client-new", "freelancer_id": FREELANCER},
     {"recipient_name": "Fred Freelancer", "client_name": "the client", "freelancer_name": "Fred Freelancer",
      "account_name": ""}, ["client-new"]),
    ({"recipient_id": "freelancer-new", "client_id": CLIENT, "freelancer_id": "freelancer-new"},
     {"recipient_name": "there", "client_name": "Carla Client", "freelancer_name": "the freelancer",
      "account_name": ""}, ["freelancer-new"]),
    ({"recipient_id": "acc-new", "account_id": "acc-new"},  # an account's own event: the id stands in
     {"recipient_name": "there", "client_name": "the client", "freelancer_name": "the freelancer",
      "account_name": "acc-new"}, ["acc-new"]),
    ({"recipient_id": ADMINS, "client_id": "client-new", "freelancer_id": "freelancer-new"},
     {"recipient_name": "there", "client_name": "the client", "freelancer_name": "the freelancer",
      "account_name": ""}, ["administrators", "client-new", "freelancer-new"]),
])
def test_a_notification_names_whom_it_knows_and_lists_whom_it_waits_for(values, fields, unknown):
    assert names_for(values, NAMES_KNOWN) == (fields, unknown)
    given = names_given({**values, **fields}, unknown)
    assert all(person not in given for person in unknown)
    assert names_for(values, given) == (fields, unknown)  # what it gives is what it was rendered with


@pytest.mark.parametrize("event_type", sorted(EXPECTED))
def test_every_template_renders_the_same_from_the_values_kept_for_a_late_name(event_type):
    """A notification waiting for a name keeps its values as JSON and is rendered from them again: dates become
    strings there, and every template must read the same from them."""
    templates = Templates(TEMPLATES)
    known = Known(PARTIES, "Logo", {**NAMES_KNOWN, ADMINS: "Administrators"})
    for notice in notices_for(event_type, data(event_type), PARTIES):
        values, unknown = template_values(notice, known)
        assert unknown == []
        kept = json.loads(values_as_json(values))  # as the repository keeps them, and reads them back
        assert templates.render(notice.kind, kept) == templates.render(notice.kind, values), notice.kind
