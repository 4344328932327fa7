"""From other services' events to notifications: keep the projections, then write one row per person and channel.

Runs in the consumer's transaction, together with the inbox claim: a redelivered event finds its
id claimed (and, belt and braces, its rows' unique key taken) and notifies nobody twice. Nothing is
sent from here: in-app rows are delivered by being written; email rows wait, `pending`, for the
delivery loop (service_layer/delivery.py).
"""

from typing import Any

from platform_runtime.logging import get_logger
from platform_schemas import Envelope, Message, registry
from platform_schemas.events.notifications import NotificationSent
from platform_schemas.topics import NOTIFICATIONS_EVENTS

from ..adapters.repository import NotificationRepository
from ..domain import routing
from ..domain.delivery import DELIVERED, PENDING, notification_id
from ..domain.routing import Notice, Parties
from .context import Context

log = get_logger(__name__)


async def project(event_type: str, data: dict[str, Any], repo: NotificationRepository) -> None:
    """Remember who is who: people from AccountRegistered, contracts' parties and milestone titles."""
    if event_type == "AccountRegistered":
        await repo.save_account(data["account_id"], data["role"], data["name"], data["email"])
    if event_type in ("OfferSent", "OfferFundingFailed"):
        await repo.save_contract(Parties(data["contract_id"], data["client_id"], data["freelancer_id"],
                                         data["currency"], data.get("title")))
    if event_type == "OfferSent":
        for m in data["milestones"]:
            await repo.save_milestone(m["milestone_id"], data["contract_id"], m["title"], m["amount"])
    if event_type in ("MilestoneAdded", "MilestoneEdited"):
        await repo.save_milestone(data["milestone_id"], data["contract_id"], data["title"], data["amount"])


async def notify(event: Message, ctx: Context) -> None:
    """Keep the projections, then one row per person told and channel."""
    envelope, repo = ctx.envelope, ctx.notifications
    data = event.model_dump(mode="python")
    await project(envelope.type, data, repo)
    parties = await repo.parties(data.get("contract_id"))
    try:
        notices = routing.notices_for(envelope.type, data, parties)
    except routing.RecipientUnknown as unknown:
        # Contract events share one partition, so OfferSent always comes first; this means an
        # event about a contract this service never heard of. Logged, not retried forever.
        log.warning("notification_recipient_unknown", event_id=envelope.id, type=envelope.type,
                    missing=str(unknown))
        return
    for notice in notices:
        await _notify(ctx, notice, envelope, parties)


async def _notify(ctx: Context, notice: Notice, envelope: Envelope, parties: Parties | None) -> None:
    repo = ctx.notifications
    rendered = ctx.templates.render(notice.kind, await template_values(notice, parties, repo))
    now = ctx.now
    for channel in routing.CHANNELS:
        nid = notification_id(envelope.id, notice.account_id, channel)
        email = channel == "email"
        added = await repo.add(
            notification_id=nid, event_id=envelope.id, event_type=envelope.type, kind=notice.kind,
            account_id=notice.account_id, channel=channel, contract_id=notice.facts.get("contract_id"),
            subject=rendered.subject, body_text=rendered.text, body_html=rendered.html if email else None,
            status=PENDING if email else DELIVERED, next_attempt_at=now if email else None,
            created_at=now, delivered_at=None if email else now)
        if added and not email:
            ctx.uow.publish(NOTIFICATIONS_EVENTS, NotificationSent(
                notification_id=nid, account_id=notice.account_id, channel=channel, kind=notice.kind,
                event_id=envelope.id, contract_id=notice.facts.get("contract_id")),
                subject=notice.account_id, event_id=f"{nid}:sent")


async def template_values(notice: Notice, parties: Parties | None, repo: NotificationRepository) -> dict[str, Any]:
    """Everything a template may use (listed in templates/README.md)."""
    facts = notice.facts
    recipient = await repo.account(notice.account_id)
    client_id = facts.get("client_id") or (parties.client_id if parties else None)
    freelancer_id = facts.get("freelancer_id") or (parties.freelancer_id if parties else None)
    contract_id = facts.get("contract_id")
    milestone_title = await repo.milestone_title(facts.get("milestone_id"))
    return {
        "contract_id": contract_id, "client_id": client_id, "freelancer_id": freelancer_id, **facts,
        "party": notice.party,
        "recipient_id": notice.account_id,
        "recipient_name": recipient["name"] if recipient else "there",
        "contract_label": facts.get("contract_title") or facts.get("title") or contract_id or "",
        "milestone_label": milestone_title or facts.get("milestone_id") or "",
        "client_name": await _name(repo, client_id, "the client"),
        "freelancer_name": await _name(repo, freelancer_id, "the freelancer"),
        "account_name": await _name(repo, facts.get("account_id"), facts.get("account_id") or ""),
    }


async def _name(repo: NotificationRepository, account_id: str | None, otherwise: str) -> str:
    account = await repo.account(account_id) if account_id else None
    return account["name"] if account else otherwise


EVENT_TYPES = sorted({*routing.RULES, "AccountRegistered", "MilestoneAdded", "MilestoneEdited"})
HANDLERS = {registry.ALL[event_type]: notify for event_type in EVENT_TYPES}
