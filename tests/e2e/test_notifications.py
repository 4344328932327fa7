"""Notifications end to end: the four services as processes on real Kafka and PostgreSQL, mail to a real SMTP sink.

Each notification is checked where the person sees it: the in-app list (GET /accounts/{id}/notifications)
and the mailbox of the SMTP sink (one mail per notification, found by its Message-ID).
"""

import asyncio
import time
from datetime import date

import httpx
import pytest

from platform_runtime.client import PlatformClient, new_id
from platform_schemas import Envelope, new_envelope
from platform_schemas.commands.contracts import (
    AcceptOffer, ActivateMilestone, ApproveMilestone, CancelContract, DeclineOffer, EndContract, ReactivateAccount,
    RequestChanges, RequestReactivation, ResolveDispute, RespondToRefundRequest, SubmitWork, SuspendAccount,
    WithdrawOffer,
)
from platform_schemas.events.billing import BonusFailed, BonusPaid
from platform_schemas.topics import BILLING_EVENTS, CONTRACTS_EVENTS
from tests.support.checks import publish_as
from tests.support.polling import eventually
from tests.support.smtp import SmtpSink
from tests.support.story import Parties, add_card, parties, register, send_offer
from tests.support.times import at

pytestmark = pytest.mark.e2e
ADMIN = "admin:tests"


def email_of(account_id: str) -> str:
    return f"{account_id}@example.test"  # as tests/support/story.py registers people


def when(timestamp: str) -> str:
    """A deadline as the templates write it."""
    return at(timestamp).strftime("%d %b %Y, %H:%M UTC")


async def inbox(client: PlatformClient, account_id: str) -> list[dict]:
    """The whole in-app list of a person, newest first, following the `next` cursor."""
    items, cursor = [], None
    while True:
        path = f"/accounts/{account_id}/notifications?limit=20" + (f"&next={cursor}" if cursor else "")
        try:
            response = await client.get("notifications", path)
        except httpx.RemoteProtocolError:
            # A pooled keep-alive connection the server closed just as it was reused: ask again on a new one.
            response = await client.get("notifications", path)
        if response.status_code == 404:
            return []
        response.raise_for_status()
        page = response.json()
        items += page["items"]
        cursor = page.get("next")
        if not cursor:
            return items


async def notified(client: PlatformClient, sink: SmtpSink, account_id: str, kind: str, *, count: int = 1,
                   timeout: float = 45) -> list[dict]:
    """Wait until `kind` reached the person `count` times in-app and by a delivered email; checks the mail.

    Returns the in-app items (newest first)."""
    deadline = time.monotonic() + timeout
    while True:
        items = [i for i in await inbox(client, account_id) if i["kind"] == kind]
        in_app = [i for i in items if i["channel"] == "in_app"]
        emails = [i for i in items if i["channel"] == "email" and i["status"] == "sent"]
        if len(in_app) >= count and len(emails) >= count:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{account_id} was not told {kind} x{count} within {timeout}s; has {items}")
        await asyncio.sleep(0.2)
    assert all(i["status"] == "delivered" for i in in_app)
    mails = await sink.messages(to=email_of(account_id))
    for email in emails:
        copies = [m for m in mails if m["message_id"] == f"<{email['notification_id']}@notifications.escrow-platform>"]
        assert len(copies) == 1, f"{len(copies)} mails for notification {email['notification_id']}"
        assert copies[0]["subject"] == email["subject"] and copies[0]["kind"] == kind
        assert copies[0]["text"] == email["body"] and "<html" in copies[0]["html"]
    return in_app


async def command(client: PlatformClient, data, subject: str, actor: str, outcomes: set[str]) -> Envelope:
    sent = await client.send(data, subject=subject, actor=actor)
    outcome = await client.outcome(sent, outcomes)
    assert outcome.type in outcomes, outcome.data
    return outcome


async def told_administrators(client: PlatformClient, sink: SmtpSink, kind: str, about: str,
                              timeout: float = 45) -> dict:
    """The administrators (one recipient, ADMIN_EMAIL) got `kind` in-app and by email, naming `about`."""
    deadline = time.monotonic() + timeout
    while True:
        items = [i for i in await inbox(client, "administrators") if i["kind"] == kind and about in i["body"]]
        sent = [i for i in items if i["channel"] == "email" and i["status"] == "sent"]
        if sent and any(i["channel"] == "in_app" for i in items):
            break
        assert time.monotonic() < deadline, f"administrators were not told {kind} about {about}"
        await asyncio.sleep(0.2)
    mails = await sink.messages(to=email_of("administrators"))
    assert [m["subject"] for m in mails if m["message_id"] == f"<{sent[0]['notification_id']}@notifications.escrow-platform>"] \
        == [sent[0]["subject"]]
    return sent[0]


async def kinds_of(client: PlatformClient, account_id: str) -> list[str]:
    return sorted(i["kind"] for i in await inbox(client, account_id) if i["channel"] == "in_app")


# -- offers ---------------------------------------------------------------------------------------------------
async def test_an_offer_reaches_the_freelancer_and_a_failed_funding_tells_the_client_why(client, platform):
    sink = platform.smtp
    funded, declined = await asyncio.gather(parties(client), parties(client, token="tok_chargeDeclined"))
    (sent, outcome), (failed_cmd, failed) = await asyncio.gather(
        send_offer(client, funded, amounts=(150_000, 70_000)), send_offer(client, declined, amounts=(250_000,)))
    assert (outcome.type, failed.type) == ("OfferSent", "OfferFundingFailed")

    [offer] = await notified(client, sink, funded.freelancer_id, "offer_received")
    assert "Brand identity" in offer["subject"]
    assert "2,200.00 USD in total" in offer["body"] and "1,500.00 USD is already held in escrow" in offer["body"]
    assert f"client {funded.client_id}" in offer["subject"]  # the client's registered name

    [failure] = await notified(client, sink, declined.client_id, "offer_funding_failed")
    assert "2,500.00 USD" in failure["body"] and failed.data["message"] in failure["body"]
    assert failed.data["reason_code"] in failure["body"]

    # Nobody else hears of either: the client of the sent offer and the freelancer of the failed one.
    assert await kinds_of(client, funded.client_id) == []
    assert await kinds_of(client, declined.freelancer_id) == []
    assert await kinds_of(client, funded.freelancer_id) == ["offer_received"]


async def test_an_unknown_account_has_no_notifications_404(client):
    response = await client.get("notifications", f"/accounts/{new_id('nobody')}/notifications")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


# -- the lifecycle --------------------------------------------------------------------------------------------
async def declined_offer(client, sink) -> None:
    people = await parties(client)
    sent, _ = await send_offer(client, people, amounts=(120_000,))
    contract_id = sent.data["contract_id"]
    await command(client, DeclineOffer(contract_id=contract_id, reason="Too busy"), contract_id,
                  people.freelancer_id, {"OfferDeclined"})
    [item] = await notified(client, sink, people.client_id, "offer_declined")
    assert "declined your offer" in item["body"] and "1,200.00 USD" in item["body"]
    [refund] = await notified(client, sink, people.client_id, "refund_completed")  # the deposit, back on the card
    assert "1,200.00 USD" in refund["subject"]
    assert await kinds_of(client, people.client_id) == ["offer_declined", "refund_completed"]
    assert await kinds_of(client, people.freelancer_id) == ["offer_received"]


async def withdrawn_offer(client, sink) -> None:
    people = await parties(client)
    sent, _ = await send_offer(client, people)
    contract_id = sent.data["contract_id"]
    await command(client, WithdrawOffer(contract_id=contract_id), contract_id, people.client_id, {"OfferWithdrawn"})
    [item] = await notified(client, sink, people.freelancer_id, "offer_withdrawn")
    assert "withdrew the offer" in item["body"] and "Brand identity" in item["subject"]
    assert await kinds_of(client, people.freelancer_id) == ["offer_received", "offer_withdrawn"]
    [refund] = await notified(client, sink, people.client_id, "refund_completed")
    assert "500.00 USD" in refund["subject"]
    assert await kinds_of(client, people.client_id) == ["refund_completed"]


async def review_cycle(client, sink) -> None:
    """Accept, submit, changes, resubmit, reminder, auto-release; then a manual approval that ends the contract."""
    people = await parties(client)
    sent, _ = await send_offer(client, people, amounts=(150_000, 80_000))
    contract_id = sent.data["contract_id"]
    first, second = (m["milestone_id"] for m in sent.data["milestones"])
    c, f = people.client_id, people.freelancer_id

    await command(client, AcceptOffer(contract_id=contract_id), contract_id, f, {"ContractStarted"})
    [accepted] = await notified(client, sink, c, "offer_accepted")
    assert "accepted your offer" in accepted["body"]

    submitted = await command(client, SubmitWork(contract_id=contract_id, milestone_id=first, message="Logo v1"),
                              contract_id, f, {"WorkSubmitted"})
    # Changes are asked at once (the review lasts 6 s here); the mail about the submission is read after.
    changes_asked = await command(client, RequestChanges(contract_id=contract_id, milestone_id=first,
                                                         message="Make it bluer"), contract_id, c, {"ChangesRequested"})
    [work] = await notified(client, sink, c, "work_submitted")
    assert "Logo v1" in work["body"] and when(submitted.data["review_due_at"]) in work["body"]
    assert "Milestone 1" in work["subject"]
    # Both are told what is coming up: this review's auto-release (and, to the client, its reminder).
    coming = f"{when(submitted.data['review_due_at'])}: 1,500.00 USD released automatically"
    assert f"Coming up for you:\n- {coming} (you are reminded {when(submitted.data['review_reminder_at'])})" \
        in work["body"]
    [changes] = await notified(client, sink, f, "changes_requested")
    assert "Make it bluer" in changes["body"]
    [sent_off] = await notified(client, sink, f, "work_submitted")
    assert "Your work on" in sent_off["subject"] and f"- {coming}\n" in sent_off["body"]

    resubmitted = await command(client, SubmitWork(contract_id=contract_id, milestone_id=first, message="Logo v2"),
                                contract_id, f, {"WorkSubmitted"})
    due = when(resubmitted.data["review_due_at"])
    # The resubmission's reminder comes 3 s before its 6 s review period ends. The first review's was due 3 s after
    # the first submission: on a loaded machine the changes may be asked only after it fired (never later, and its
    # event comes before ChangesRequested on the contract's partition).
    def reminders_for(submission: Envelope) -> list[Envelope]:
        return [e for e in client.of_type("ReviewPeriodEndingSoon", milestone_id=first)
                if at(e.data["review_due_at"]) == at(submission.data["review_due_at"])]
    await eventually(lambda: reminders_for(resubmitted), 45, "the resubmission's ReviewPeriodEndingSoon")
    early = reminders_for(submitted)
    assert all(e.time < changes_asked.time for e in early), (early, changes_asked)
    reminder = (await notified(client, sink, c, "review_reminder", count=1 + len(early)))[0]  # newest first
    assert due in reminder["body"] and due in reminder["subject"]
    released = await notified(client, sink, f, "payment_released")
    assert "1,500.00 USD auto-released to you" in released[0]["subject"]
    [to_client] = await notified(client, sink, c, "payment_released")
    assert "automatically" in to_client["body"] and "1,500.00 USD" in to_client["body"]

    await command(client, ActivateMilestone(contract_id=contract_id, milestone_id=second), contract_id, c,
                  {"MilestoneFunded"})
    await command(client, SubmitWork(contract_id=contract_id, milestone_id=second, message="Style guide"),
                  contract_id, f, {"WorkSubmitted"})
    await command(client, ApproveMilestone(contract_id=contract_id, milestone_id=second, keep_open=False),
                  contract_id, c, {"ContractEnded"})
    manual = await notified(client, sink, f, "payment_released", count=2)
    assert "800.00 USD released to you" in manual[0]["subject"] and "approved your work" in manual[0]["body"]
    await notified(client, sink, c, "payment_released", count=2)
    for person in (c, f):
        [ended] = await notified(client, sink, person, "contract_ended")
        assert "ended the contract" in ended["body"]
    # The second review is approved at once; on a loaded machine its 3-second reminder may still come first.
    late = [e for e in client.of_type("ReviewPeriodEndingSoon", milestone_id=second)]
    assert await kinds_of(client, c) == sorted(["offer_accepted", "work_submitted", "work_submitted",
                                                "review_reminder", "payment_released", "work_submitted",
                                                "payment_released", "contract_ended"]
                                               + ["review_reminder"] * (len(early) + len(late)))
    assert await kinds_of(client, f) == sorted(["offer_received", "changes_requested", "payment_released",
                                                "work_submitted", "work_submitted", "work_submitted",
                                                "payment_released", "contract_ended"])


async def cancel_with_dispute(client, sink) -> None:
    """Cancel: the unsubmitted milestone is refunded at once; the submitted one is disputed and split."""
    people = await parties(client)
    sent, _ = await send_offer(client, people, amounts=(50_000, 30_000), deposit="all_milestones")
    contract_id = sent.data["contract_id"]
    first, second = (m["milestone_id"] for m in sent.data["milestones"])
    c, f = people.client_id, people.freelancer_id
    await command(client, AcceptOffer(contract_id=contract_id), contract_id, f, {"ContractStarted"})
    await command(client, SubmitWork(contract_id=contract_id, milestone_id=first, message="Done"), contract_id, f,
                  {"WorkSubmitted"})
    cancel = await client.send(CancelContract(contract_id=contract_id, reason="Project stopped"),
                               subject=contract_id, actor=c)
    asked = await client.wait_for(lambda e: e.type == "RefundRequested" and e.correlationid == cancel.id)
    # Disputed at once: silence for the (6 s) window would accept the refund.
    await command(client, RespondToRefundRequest(contract_id=contract_id, milestone_id=first, accept=False),
                  contract_id, f, {"DisputeOpened"})

    [request] = await notified(client, sink, f, "refund_requested")
    assert "500.00 USD" in request["body"] and when(asked.data["respond_by"]) in request["body"]
    [refunded] = await notified(client, sink, c, "refund_completed")  # the second milestone, at once
    assert "300.00 USD" in refunded["body"] and "Milestone 2" in refunded["body"]
    for person in (c, f):
        [opened] = await notified(client, sink, person, "dispute_opened")
        assert "500.00 USD" in opened["subject"]
    to_admins = await told_administrators(client, sink, "dispute_opened", f"freelancer {f} disputed")
    assert "GET /disputes?status=open" in to_admins["body"]
    queue = await client.get_json("contracts", "/disputes?status=open&limit=1000")
    [queued] = [d for d in queue["items"] if d["contract_id"] == contract_id]
    assert (queued["milestone_id"], queued["amount"], queued["overdue"]) == (first, 50_000, False)
    assert queued["age_seconds"] >= 0
    await command(client, ResolveDispute(contract_id=contract_id, milestone_id=first, release_amount=30_000,
                                         refund_amount=20_000), contract_id, ADMIN, {"DisputeResolved"})
    for person in (c, f):
        [resolved] = await notified(client, sink, person, "dispute_resolved")
        assert "300.00 USD" in resolved["body"] and "200.00 USD" in resolved["body"]
        [cancelled] = await notified(client, sink, person, "contract_cancelled")
        assert "Project stopped" in cancelled["body"]
        await notified(client, sink, person, "payment_released")  # the released part of the split
    await notified(client, sink, c, "refund_completed", count=2)  # and the refunded part
    assert await kinds_of(client, f) == sorted(["offer_received", "work_submitted", "refund_requested",
                                                "dispute_opened",
                                                "dispute_resolved", "payment_released", "contract_cancelled"])


async def freelancer_ends(client, sink) -> None:
    people = await parties(client)
    sent, _ = await send_offer(client, people, amounts=(90_000,))
    contract_id = sent.data["contract_id"]
    await command(client, AcceptOffer(contract_id=contract_id), contract_id, people.freelancer_id, {"ContractStarted"})
    await command(client, EndContract(contract_id=contract_id), contract_id, people.freelancer_id, {"ContractEnded"})
    [to_client] = await notified(client, sink, people.client_id, "contract_ended")
    assert f"freelancer {people.freelancer_id} ended the contract" in to_client["body"]
    assert "900.00 USD" in to_client["body"]
    [to_freelancer] = await notified(client, sink, people.freelancer_id, "contract_ended")
    assert "You ended the contract" in to_freelancer["body"]
    [refund] = await notified(client, sink, people.client_id, "refund_completed")
    assert "900.00 USD" in refund["body"]


async def suspensions(client, sink) -> None:
    appealable, final = await asyncio.gather(register(client, "client"), register(client, "freelancer"))
    await command(client, SuspendAccount(account_id=appealable, reason="Unpaid invoices", appealable=True),
                  appealable, ADMIN, {"AccountSuspended"})
    await command(client, SuspendAccount(account_id=final, reason="Fraud", appealable=False), final, ADMIN,
                  {"AccountSuspended"})
    [suspended] = await notified(client, sink, appealable, "account_suspended")
    assert "Unpaid invoices" in suspended["body"] and "can be reversed" in suspended["body"]
    [for_good] = await notified(client, sink, final, "account_suspended")
    assert "Fraud" in for_good["body"] and "cannot be reversed" in for_good["body"]

    await command(client, RequestReactivation(account_id=appealable), appealable, appealable,
                  {"ReactivationRequested"})
    await notified(client, sink, appealable, "reactivation_requested")
    await told_administrators(client, sink, "reactivation_requested", f"({appealable})")
    pending = await client.get_json("contracts", "/reactivation-requests?status=pending&limit=1000")
    [waiting] = [r for r in pending["items"] if r["account_id"] == appealable]
    assert (waiting["suspension_reason"], waiting["status"]) == ("Unpaid invoices", "pending")
    await command(client, ReactivateAccount(account_id=appealable), appealable, ADMIN, {"AccountReactivated"})
    await notified(client, sink, appealable, "account_reactivated")
    pending = await client.get_json("contracts", "/reactivation-requests?status=pending&limit=1000")
    assert appealable not in [r["account_id"] for r in pending["items"]]
    refused = await command(client, RequestReactivation(account_id=final), final, final, {"ReactivationRefused"})
    [refusal] = await notified(client, sink, final, "reactivation_refused")
    assert refused.data["message"] in refusal["body"]


async def milestone_funding_fails(client, sink) -> None:
    people = await parties(client)
    sent, _ = await send_offer(client, people, amounts=(40_000, 60_000))
    contract_id, second = sent.data["contract_id"], sent.data["milestones"][1]["milestone_id"]
    await command(client, AcceptOffer(contract_id=contract_id), contract_id, people.freelancer_id, {"ContractStarted"})
    await add_card(client, people.client_id, "tok_chargeDeclined")
    failed = await command(client, ActivateMilestone(contract_id=contract_id, milestone_id=second), contract_id,
                           people.client_id, {"MilestoneFundingFailed"})
    [told] = await notified(client, sink, people.client_id, "milestone_funding_failed")
    assert "Milestone 2" in told["subject"] and "600.00 USD" in told["body"]
    assert failed.data["reason_code"] in told["body"] and "activate the milestone again" in told["body"]
    assert "milestone_funding_failed" not in await kinds_of(client, people.freelancer_id)


async def test_every_lifecycle_notification_reaches_the_right_people_with_its_content(client, platform):
    sink = platform.smtp
    await asyncio.gather(declined_offer(client, sink), withdrawn_offer(client, sink), review_cycle(client, sink),
                         cancel_with_dispute(client, sink), freelancer_ends(client, sink), suspensions(client, sink),
                         milestone_funding_fails(client, sink))


async def test_bonus_outcomes_published_by_billing_reach_the_right_person(client, platform):
    """Billing's daily bonus batch is not built yet: its two outcome events are published here as billing would."""
    sink = platform.smtp
    people = await parties(client)
    sent, _ = await send_offer(client, people)
    contract_id = sent.data["contract_id"]
    common = dict(business_date=date.today(), contract_id=contract_id, client_id=people.client_id,
                  freelancer_id=people.freelancer_id, currency="USD")
    await publish_as(platform, "billing", BILLING_EVENTS, *(
        new_envelope(data, subject=contract_id, source="billing", actor="system")
        for data in (BonusPaid(bonus_id=new_id("bonus"), amount=12_345, charge_id=new_id("charge"), **common),
                     BonusFailed(bonus_id=new_id("bonus"), amount=6_789, reason_code="card_declined",
                                 message="The card was declined.", **common))))
    [paid] = await notified(client, sink, people.freelancer_id, "bonus_received")
    assert "123.45 USD" in paid["subject"] and f"client {people.client_id}" in paid["body"]
    [failed] = await notified(client, sink, people.client_id, "bonus_charge_failed")
    assert "67.89 USD" in failed["subject"] and "The card was declined." in failed["body"]


# -- exactly once ---------------------------------------------------------------------------------------------
async def test_a_redelivered_event_notifies_nobody_twice(client, platform):
    sink = platform.smtp
    people = await parties(client)
    sent, outcome = await send_offer(client, people)
    contract_id = sent.data["contract_id"]
    await notified(client, sink, people.freelancer_id, "offer_received")

    # The same envelope (same id) again, as a relay that crashed before marking it sent would publish it.
    await publish_as(platform, "contracts", CONTRACTS_EVENTS, outcome, outcome)
    # Then a new event on the same partition: once its notification is there, the copies were consumed.
    await command(client, DeclineOffer(contract_id=contract_id), contract_id, people.freelancer_id, {"OfferDeclined"})
    await notified(client, sink, people.client_id, "offer_declined")

    items = [i for i in await inbox(client, people.freelancer_id) if i["kind"] == "offer_received"]
    assert sorted(i["channel"] for i in items) == ["email", "in_app"]
    mails = [m for m in await sink.messages(to=email_of(people.freelancer_id)) if m["kind"] == "offer_received"]
    assert len(mails) == 1
    await client.wait_for(lambda e: e.type == "NotificationSent" and e.data["channel"] == "email"
                          and e.data["account_id"] == people.freelancer_id)
    sent_events = [e for e in client.of_type("NotificationSent", account_id=people.freelancer_id)
                   if e.data["kind"] == "offer_received"]
    assert sorted(e.data["channel"] for e in sent_events) == ["email", "in_app"]


async def test_mail_held_back_while_smtp_is_down_is_delivered_once_when_it_is_back(client, platform):
    sink = platform.smtp
    sink.stop()
    try:
        groups = await asyncio.gather(*(parties(client) for _ in range(3)))
        await asyncio.gather(*(send_offer(client, people) for people in groups))
        freelancers = [people.freelancer_id for people in groups]
        deadline = time.monotonic() + 30
        while True:  # every email is pending after at least one failed try; in-app ones are already there
            items = [i for f in freelancers for i in await inbox(client, f)]
            emails = [i for i in items if i["channel"] == "email"]
            if len(emails) == 3 and all(i["status"] == "pending" and i["attempts"] >= 1 for i in emails):
                break
            assert time.monotonic() < deadline, items
            await asyncio.sleep(0.2)
        assert [i["status"] for i in items if i["channel"] == "in_app"] == ["delivered"] * 3
    finally:
        await sink.start()

    for freelancer in freelancers:
        [email] = [i for i in await inbox(client, freelancer) if i["channel"] == "email"]
        await notified(client, sink, freelancer, "offer_received")  # one mail per Message-ID, checked inside
        [sent_email] = [i for i in await inbox(client, freelancer) if i["channel"] == "email"]
        assert sent_email["notification_id"] == email["notification_id"] and sent_email["attempts"] >= 2
        assert len(await sink.messages(to=email_of(freelancer))) == 1
