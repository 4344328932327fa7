"""Building blocks of end-to-end stories: registered people with cards, sent offers."""

from dataclasses import dataclass

from platform_runtime.client import PlatformClient, new_id
from platform_schemas.commands.billing import AddBillingMethod
from platform_schemas.commands.contracts import MilestoneSpec, RegisterAccount, SendOffer

# A setup step's outcome: a deadline, not a latency check (seen taking over 30 s at a load average of 25).
SETUP_WITHIN = 120.0


@dataclass
class Parties:
    client_id: str
    freelancer_id: str


async def register(client: PlatformClient, role: str) -> str:
    account_id = new_id(role)
    command = await client.send(RegisterAccount(account_id=account_id, role=role, name=f"{role} {account_id}",
                                                email=f"{account_id}@example.test"),
                                subject=account_id, actor="admin:tests")
    outcome = await client.outcome(command, {"AccountRegistered"}, timeout=SETUP_WITHIN)
    assert outcome.type == "AccountRegistered", outcome.data
    return account_id


async def add_card(client: PlatformClient, account_id: str, token: str = "tok_visa") -> str:
    method_id = new_id("card")
    command = await client.send(AddBillingMethod(account_id=account_id, billing_method_id=method_id, kind="card",
                                                 token=token, make_primary=True), subject=account_id, actor=account_id)
    outcome = await client.outcome(command, {"BillingMethodAdded"}, timeout=SETUP_WITHIN)
    assert outcome.type == "BillingMethodAdded", outcome.data
    return method_id


async def parties(client: PlatformClient, token: str | None = "tok_visa") -> Parties:
    client_id = await register(client, "client")
    freelancer_id = await register(client, "freelancer")
    if token:
        await add_card(client, client_id, token)
    return Parties(client_id, freelancer_id)


def offer(people: Parties, amounts: tuple[int, ...] = (50_000, 70_000, 30_000), deposit: str = "first_milestone",
          currency: str = "USD") -> SendOffer:
    return SendOffer(
        contract_id=new_id("contract"), client_id=people.client_id, freelancer_id=people.freelancer_id,
        title="Brand identity", currency=currency, deposit=deposit,
        milestones=[MilestoneSpec(milestone_id=new_id("ms"), title=f"Milestone {i + 1}", amount=a)
                    for i, a in enumerate(amounts)])


async def send_offer(client: PlatformClient, people: Parties, **kwargs):
    """Send an offer and wait for its outcome; returns (command, outcome)."""
    data = offer(people, **kwargs)
    command = await client.send(data, subject=data.contract_id, actor=people.client_id)
    return command, await client.outcome(command, {"OfferSent", "OfferFundingFailed"})
