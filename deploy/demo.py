"""`make demo`: the platform on a scripted story, driven exactly as another back end would drive it.

Commands go to Kafka as CloudEvents; events are printed as they arrive; the read side is HTTP.
Exits non-zero if the story does not go as it should.
"""

import asyncio
import os
import sys
from datetime import datetime, timezone

from rich.console import Console
from rich.table import Table

from platform_runtime.client import PlatformClient, new_id
from platform_runtime.credentials import Credentials
from platform_schemas import Envelope
from platform_schemas.commands.billing import AddBillingMethod
from platform_schemas.commands.contracts import (
    AcceptOffer, ActivateMilestone, ApproveMilestone, CancelContract, MilestoneSpec, RegisterAccount, RequestChanges,
    GiveBonus, SendOffer, SubmitWork, SuspendAccount,
)

console = Console(highlight=False)
ADMIN = "admin:demo"


def money(amount: int, currency: str = "USD") -> str:
    return f"{amount / 100:,.2f} {currency}"


def show_event(event: Envelope) -> None:
    if event.type in ("TransactionRecorded", "NotificationSent"):
        return
    data = event.data
    detail = ", ".join(f"{k}={v}" for k, v in data.items()
                       if k in ("milestone_id", "amount", "reason_code", "message", "review_due_at", "status",
                                "automatic", "refunded_amount", "account_id") and v not in (None, ""))
    console.print(f"  [dim]{event.time:%H:%M:%S.%f}"[:-3] + f"[/dim]  [cyan]{event.source:>13}[/cyan]  "
                  f"[bold]{event.type}[/bold]  [dim]{event.subject}[/dim]  {detail}")


class Story:
    def __init__(self, client: PlatformClient) -> None:
        self.client = client
        self.failures: list[str] = []

    def step(self, text: str) -> None:
        console.print(f"\n[bold yellow]▶ {text}[/bold yellow]")

    def expect(self, condition: bool, what: str) -> None:
        if not condition:
            self.failures.append(what)
            console.print(f"  [bold red]✗ {what}[/bold red]")

    async def command(self, data, subject: str, actor: str, outcomes: set[str], timeout: float = 30) -> Envelope:
        sent = await self.client.send(data, subject=subject, actor=actor)
        outcome = await self.client.outcome(sent, outcomes, timeout)
        self.expect(outcome.type in outcomes, f"{sent.type} ended in {outcome.type}: {outcome.data}")
        return outcome

    async def register(self, role: str, name: str) -> str:
        account_id = new_id(role)
        # A fresh address per run, so the mail shown below is this run's.
        await self.command(RegisterAccount(account_id=account_id, role=role, name=name,
                                           email=f"{name.lower()}.{account_id}@example.com"), account_id, ADMIN,
                           {"AccountRegistered"})
        return account_id

    async def card(self, account_id: str, token: str) -> None:
        await self.command(AddBillingMethod(account_id=account_id, billing_method_id=new_id("card"), kind="card",
                                            token=token, make_primary=True), account_id, account_id,
                           {"BillingMethodAdded"})


async def tables(client: PlatformClient, contract_id: str, client_id: str, freelancer_id: str) -> None:
    contract = await client.get_json("contracts", f"/contracts/{contract_id}")
    table = Table(title=f"Contract {contract_id}: {contract['status']}")
    for column in ("milestone", "title", "amount", "status", "review due"):
        table.add_column(column)
    for m in contract["milestones"]:
        table.add_row(m["milestone_id"], m["title"], money(m["amount"], contract["currency"]), m["status"],
                      m.get("review_due_at", ""))
    console.print(table)
    escrow = await client.get("escrow", f"/escrow/{contract_id}")
    if escrow.status_code == 200:
        body = escrow.json()
        held = ", ".join(f"{m['milestone_id']}: {money(m['held'])}" for m in body["milestones"])
        console.print(f"  Escrow balance: [bold]{money(body['balance'], body['currency'])}[/bold] ({held})")
    for who, account_id in (("Client", client_id), ("Freelancer", freelancer_id)):
        history = await client.get_json("billing", f"/accounts/{account_id}/transactions")
        table = Table(title=f"{who} {account_id}: transaction history")
        for column in ("date", "kind", "description", "amount"):
            table.add_column(column)
        for t in history["items"]:
            table.add_row(t["occurred_at"][:19], t["kind"], t["description"], money(t["amount"], t["currency"]))
        console.print(table)


async def balance(client: PlatformClient, account_id: str) -> str:
    """`{currency: {pending, available}}` from escrow, as one line."""
    body = await client.get_json("escrow", f"/accounts/{account_id}/balance")
    return ", ".join(f"{c} pending {b['pending'] / 100:,.2f}, available {b['available'] / 100:,.2f}"
                     for c, b in body.items()) or "nothing yet"


UPCOMING = {"auto_release": "released automatically", "refund_request_deadline": "refund request answered by",
            "earning_available": "earning becomes available", "bonus_charge": "bonuses charged (daily batch)",
            "bonus_payment": "bonus paid (daily batch)"}


async def upcoming(client: PlatformClient, name: str, account_id: str) -> list[str]:
    """Print the person's upcoming list as a table; returns its kinds."""
    items = (await client.get_json("contracts", f"/accounts/{account_id}/upcoming"))["items"]
    table = Table(title=f"Coming up for {name}")
    for column in ("when (UTC)", "what", "amount", "note"):
        table.add_column(column)
    for i in items:
        note = f"client reminded {i['reminder_at'][11:19]}" if i.get("reminder_at") else ""
        table.add_row((i.get("at") or "next batch")[:19], UPCOMING.get(i["kind"], i["kind"]),
                      money(i["amount"], i["currency"]), note)
    console.print(table)
    return [i["kind"] for i in items]


async def main() -> int:
    # The administrator's commands (registrations, the suspension) go to the admin topics as the `admin` principal.
    client = PlatformClient(bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                            source="demo-marketplace", on_event=show_event, admin_kafka=Credentials.local("admin"))
    await client.start()
    story = Story(client)
    review = os.environ.get("AUTO_RELEASE_AFTER", "P14D")
    pending_for = os.environ.get("EARNINGS_PENDING_FOR", "P5D")
    try:
        story.step("An administrator registers a client (Alice) and a freelancer (Bob); Alice adds a card")
        alice, bob = await story.register("client", "Alice"), await story.register("freelancer", "Bob")
        await story.card(alice, "tok_visa")

        story.step("Alice sends Bob an offer of three milestones; the first is charged and held in escrow")
        contract_id = new_id("contract")
        ms = [new_id("ms") for _ in range(3)]
        offer = SendOffer(contract_id=contract_id, client_id=alice, freelancer_id=bob, title="Brand identity",
                          currency="USD", milestones=[
                              MilestoneSpec(milestone_id=ms[0], title="Logo concepts", amount=50_000),
                              MilestoneSpec(milestone_id=ms[1], title="Final logo", amount=70_000),
                              MilestoneSpec(milestone_id=ms[2], title="Brand book", amount=30_000)])
        await story.command(offer, contract_id, alice, {"OfferSent"})
        await tables(client, contract_id, alice, bob)

        story.step("A second client (Carol) has a card that is declined: no offer is sent")
        carol = await story.register("client", "Carol")
        await story.card(carol, "tok_chargeDeclined")
        failed_id = new_id("contract")
        failed = await story.command(SendOffer(
            contract_id=failed_id, client_id=carol, freelancer_id=bob, title="Website", currency="USD",
            milestones=[MilestoneSpec(milestone_id=new_id("ms"), title="Design", amount=120_000)]),
            failed_id, carol, {"OfferFundingFailed"})
        console.print(f"  Carol is told: [italic]{failed.data.get('message')}[/italic]")
        story.expect(not client.of_type("OfferSent", contract_id=failed_id), "no offer for Carol's contract")

        story.step("Bob accepts; submits the logo concepts; Alice asks for changes; Bob submits again")
        await story.command(AcceptOffer(contract_id=contract_id), contract_id, bob, {"ContractStarted"})
        await story.command(SubmitWork(contract_id=contract_id, milestone_id=ms[0], message="Three concepts attached"),
                            contract_id, bob, {"WorkSubmitted"})
        await story.command(RequestChanges(contract_id=contract_id, milestone_id=ms[0],
                                           message="Warmer colours, please"), contract_id, alice, {"ChangesRequested"})
        await story.command(SubmitWork(contract_id=contract_id, milestone_id=ms[0], message="Warmer colours done"),
                            contract_id, bob, {"WorkSubmitted"})

        story.step("Alice approves and, in the same command, adds and funds a rush-delivery milestone")
        extra = new_id("ms")
        await story.command(ApproveMilestone(contract_id=contract_id, milestone_id=ms[0], next_milestone=MilestoneSpec(
            milestone_id=extra, title="Rush delivery", amount=20_000)), contract_id, alice,
            {"MilestoneFunded", "MilestoneFundingFailed"})

        story.step(f"Alice funds the final logo; Bob submits it; Alice stays silent (review period {review})")
        await story.command(ActivateMilestone(contract_id=contract_id, milestone_id=ms[1]), contract_id, alice,
                            {"MilestoneFunded"})
        await story.command(GiveBonus(contract_id=contract_id, bonus_id=new_id("bonus"), amount=5_000,
                                      note="For the quick turnaround"), contract_id, alice, {"BonusGiven"})
        await story.command(SubmitWork(contract_id=contract_id, milestone_id=ms[1], message="Final logo"),
                            contract_id, bob, {"WorkSubmitted"})

        story.step("What is coming up for Alice and for Bob (GET /accounts/{id}/upcoming), soonest first")
        for name, person in (("Alice", alice), ("Bob", bob)):
            ahead = await upcoming(client, name, person)
            story.expect("auto_release" in ahead, f"{name} sees the final logo's auto-release coming")
            story.expect(("bonus_charge" if person == alice else "bonus_payment") in ahead,
                         f"{name} sees the bonus batch coming")
        paid = await client.wait_for(lambda e: e.type == "MilestonePaid" and e.data["milestone_id"] == ms[1],
                                     timeout=120, what="the auto-release")
        story.expect(paid.data["automatic"], "the final logo was released automatically")

        story.step(f"Bob's earnings are pending for the security period ({pending_for}), then available")
        console.print(f"  Bob's balance now: {await balance(client, bob)}")
        became = await client.wait_for(lambda e: e.type == "EarningAvailable" and e.data["milestone_id"] == ms[1],
                                       timeout=120, what="the final logo's earning becoming available")
        console.print(f"  {became.data['amount'] / 100:,.2f} {became.data['currency']} available since "
                      f"{became.data['available_at']}; Bob's balance: {await balance(client, bob)}")
        story.expect(became.time >= datetime.fromisoformat(became.data["available_at"].replace("Z", "+00:00")),
                     "not available before the end of its security period")

        story.step("Alice cancels the contract: the unstarted rush-delivery milestone is refunded at once")
        await story.command(CancelContract(contract_id=contract_id, reason="Project postponed"), contract_id, alice,
                            {"ContractCancelled"}, timeout=60)
        await tables(client, contract_id, alice, bob)

        story.step("An administrator suspends Carol; her next offer is refused")
        await story.command(SuspendAccount(account_id=carol, reason="Repeated chargebacks", appealable=False),
                            carol, ADMIN, {"AccountSuspended"})
        blocked_id = new_id("contract")
        rejected = await story.command(SendOffer(
            contract_id=blocked_id, client_id=carol, freelancer_id=bob, title="Website", currency="USD",
            milestones=[MilestoneSpec(milestone_id=new_id("ms"), title="Design", amount=120_000)]),
            blocked_id, carol, {"CommandRejected"})
        console.print(f"  Refused: [italic]{rejected.data['reason_code']}: {rejected.data['message']}[/italic]")

        check = await client.get_json("escrow", "/ledger/check")
        console.print(f"\nLedger check, recomputed from {check['postings']} postings: "
                      f"{'[green]ok[/green]' if check['ok'] else check['problems']}")
        story.expect(check["ok"], "the ledger balances")
        await show_mail(client, alice, bob, carol)
    finally:
        await client.stop()
    if story.failures:
        console.print(f"\n[bold red]The story went wrong in {len(story.failures)} place(s).[/bold red]")
        return 1
    console.print(f"\n[bold green]The story went as it should ({datetime.now(timezone.utc):%H:%M:%S} UTC).[/bold green]")
    return 0


async def show_mail(client: PlatformClient, *accounts: str) -> None:
    """What the notifications service told each person: the in-app list and the mail the SMTP server received."""
    try:
        in_app = {}
        for account_id in accounts:
            body = (await client.get("notifications", f"/accounts/{account_id}/notifications?limit=100")).json()
            in_app[account_id] = [i for i in reversed(body.get("items", [])) if i["channel"] == "in_app"]
        expected = sum(len(items) for items in in_app.values())
        mails = await _mails_for(client, accounts, expected)
    except Exception as error:  # noqa: BLE001 - the story does not depend on it
        console.print(f"  (notifications not available: {error!r})")
        return
    table = Table(title=f"Notifications: {expected} in-app, {len(mails)} emails received by the SMTP server")
    for column in ("to", "kind", "email subject"):
        table.add_column(column)
    for account_id, items in in_app.items():
        for item in items:
            table.add_row(account_id, item["kind"], item["subject"])
    console.print(table)
    if mails:
        sample = mails[0]
        console.print(f"\n[bold]One of the emails[/bold] (Message-ID {sample.get('message_id')}), to "
                      f"{', '.join(sample.get('rcpt_tos', []))}:\n[dim]{sample.get('text', '')}[/dim]")


async def _mails_for(client: PlatformClient, accounts: tuple[str, ...], expected: int) -> list[dict]:
    """Mail for these accounts' addresses at the SMTP server, polled until all has arrived or 20 s passed."""
    port = os.environ.get("SMTP_SINK_HTTP_PORT", "2526")
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        items = (await client.http.get(f"http://127.0.0.1:{port}/messages")).json()["items"]
        mails = [m for m in items if any(a in r for r in m.get("rcpt_tos", []) for a in accounts)]
        if len(mails) >= expected or asyncio.get_running_loop().time() > deadline:
            return mails
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
