"""From other services' events to notifications: keep the projections, then write one row per person and channel.

Runs in the consumer's transaction, together with the inbox claim: a redelivered event finds its
id claimed (and, belt and braces, its rows' unique key taken) and notifies nobody twice. Nothing is
sent from here: in-app rows are delivered by being written; email rows wait, `pending`, for the
delivery loop (service_layer/delivery.py).
"""

from typing import Any

from platform_runtime.logging import get_logger
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope, Message, registry
from platform_schemas.events.notifications import NotificationSent
from platform_schemas.topics import NOTIFICATIONS_EVENTS

from ..adapters.projection import BATCH_KEY, Known
from ..adapters.repository import NotificationRepository
from ..domain import routing
from ..domain.delivery import DELIVERED, PENDING, notification_id
from ..domain.names import names_for, names_given
from ..domain.routing import Notice, Parties
from .context import Context

log = get_logger(__name__)


CONTRACT_PROJECTED = ("OfferSent", "OfferFundingFailed")  # the events that carry a contract's parties


async def project(event_type: str, data: dict[str, Any], ctx: Context) -> Known | None:
    """Remember who is who: people from AccountRegistered (and their names filled in where notifications wait for
    them), contracts' parties and milestone titles. Saving a contract also answers the lookup of its event (the same
    round trip), returned; else None."""
    repo = ctx.notifications
    if event_type == "AccountRegistered":
        waiting = await repo.save_account(data["account_id"], data["role"], data["name"], data["email"])
        if waiting:
            await _fill_in_names(ctx, waiting, {data["account_id"]: data["name"]})
    if event_type in CONTRACT_PROJECTED:
        milestones = [(m["milestone_id"], m["title"], m["amount"]) for m in data.get("milestones") or ()] \
            if event_type == "OfferSent" else []
        return await repo.save_contract(Parties(data["contract_id"], data["client_id"], data["freelancer_id"],
                                                data["currency"], data.get("title")), milestones,
                                        data.get("milestone_id"), _named_accounts(data))
    if event_type in ("MilestoneAdded", "MilestoneEdited"):
        await repo.save_milestone(data["milestone_id"], data["contract_id"], data["title"], data["amount"])
    return None


# The fields of an event's data that name what its handler may look up: contracts, milestones, accounts.
_LOOKED_UP = {"contract_id": 0, "milestone_id": 1, "client_id": 2, "freelancer_id": 2, "account_id": 2}


async def read_ahead(envelopes: list[Envelope], uow: UnitOfWork) -> None:
    """A fetched batch's lookups in one statement (adapters/projection.py), before its events are handled. The ids are
    read from the data before it is validated, only to be looked up; an id missed here is asked of the database by
    the lookup that needs it."""
    ids: tuple[set[str], set[str], set[str]] = (set(), set(), {routing.ADMINISTRATORS_ID})
    for envelope in envelopes:
        for key, kind in _LOOKED_UP.items():
            if isinstance(value := envelope.data.get(key), str):
                ids[kind].add(value)
    uow.batch[BATCH_KEY] = await NotificationRepository(uow.session).read_ahead(*(sorted(kind) for kind in ids))


async def notify(event: Message, ctx: Context) -> None:
    """Keep the projections, then one row per person told and channel: one lookup (with the projection's
    statement when the event saves its contract), one insert for them all."""
    envelope, repo = ctx.envelope, ctx.notifications
    data = event.model_dump(mode="python")
    known = await project(envelope.type, data, ctx)
    if envelope.type not in routing.RULES:
        return  # a projection's event only (AccountRegistered, MilestoneAdded/Edited): nobody is told
    if known is None:
        known = await repo.lookup(data.get("contract_id"), data.get("milestone_id"), _named_accounts(data))
    try:
        notices = routing.notices_for(envelope.type, data, known.parties)
    except routing.RecipientUnknown as unknown:
        # Contract events share one partition, so OfferSent always comes first; this means an
        # event about a contract this service never heard of. Logged, not retried forever.
        log.warning("notification_recipient_unknown", event_id=envelope.id, type=envelope.type,
                    missing=str(unknown))
        return
    rows = [row for notice in notices for row in _rows(ctx, notice, envelope, known)]
    added = await repo.add(rows)
    for row in rows:
        if row["channel"] != "email" and row["notification_id"] in added:
            ctx.uow.publish(NOTIFICATIONS_EVENTS, NotificationSent(
                notification_id=row["notification_id"], account_id=row["account_id"], channel=row["channel"],
                kind=row["kind"], event_id=envelope.id, contract_id=row["contract_id"]),
                subject=row["account_id"], event_id=f"{row['notification_id']}:sent")


def _named_accounts(data: dict[str, Any]) -> list[str]:
    """Every account an event's notifications may name (the contract's parties are added by the lookup)."""
    named = [data.get(key) for key in ("client_id", "freelancer_id", "account_id")]
    return [routing.ADMINISTRATORS_ID, *(a for a in named if a)]


def _rows(ctx: Context, notice: Notice, envelope: Envelope, known: Known) -> list[dict[str, Any]]:
    """The notice's row on every channel: in-app delivered by being written, email pending for the loop. A row
    naming someone whose name is not known yet keeps its values and waits for it (domain/names.py); its email is
    due when the names come, or after `names_wait` with the stand-in wording."""
    values, unknown = template_values(notice, known)
    rendered = ctx.templates.render(notice.kind, values)
    now, waiting = ctx.now, _waiting(values, unknown)
    rows = []
    for channel in routing.CHANNELS:
        email = channel == "email"
        rows.append(dict(
            notification_id=notification_id(envelope.id, notice.account_id, channel), event_id=envelope.id,
            event_type=envelope.type, kind=notice.kind, account_id=notice.account_id, channel=channel,
            contract_id=notice.facts.get("contract_id"), subject=rendered.subject, body_text=rendered.text,
            body_html=rendered.html if email else None, status=PENDING if email else DELIVERED,
            next_attempt_at=(now + ctx.names_wait if unknown else now) if email else None, created_at=now,
            delivered_at=None if email else now, **waiting))
    return rows


def template_values(notice: Notice, known: Known) -> tuple[dict[str, Any], list[str]]:
    """Everything a template may use (listed in templates/README.md), and the people named whose names are not
    known yet."""
    facts, parties = notice.facts, known.parties
    client_id = facts.get("client_id") or (parties.client_id if parties else None)
    freelancer_id = facts.get("freelancer_id") or (parties.freelancer_id if parties else None)
    contract_id = facts.get("contract_id")
    values = {
        "contract_id": contract_id, "client_id": client_id, "freelancer_id": freelancer_id, **facts,
        "party": notice.party,
        "recipient_id": notice.account_id,
        "contract_label": facts.get("contract_title") or facts.get("title") or contract_id or "",
        "milestone_label": known.milestone_title or facts.get("milestone_id") or "",
    }
    fields, unknown = names_for(values, known.names)
    return {**values, **fields}, unknown


async def _fill_in_names(ctx: Context, waiting: list[dict[str, Any]], names: dict[str, str]) -> None:
    """The notifications that waited for a name just registered, rendered again with every name now known: those
    their values give, those of the others they waited for that came meanwhile (read by the statement that saved
    the registration), and the new one. An email whose names are all known is due at once."""
    now, updates = ctx.now, []
    for row in waiting:
        values = row["render_values"]
        fields, unknown = names_for(values, {**names_given(values, row["awaiting_names"]), **row["names"], **names})
        values.update(fields)  # kept with the names now in, for the next registration it waits for
        rendered = ctx.templates.render(row["kind"], values)
        email = row["channel"] == "email"
        updates.append(dict(
            notification_id=row["notification_id"], subject=rendered.subject, body_text=rendered.text,
            body_html=rendered.html if email else None,
            **_waiting(values, unknown), due_now=email and row["status"] == PENDING and not unknown))
    await ctx.notifications.fill_in_names(updates, now)


def _waiting(values: dict[str, Any], unknown: list[str]) -> dict[str, Any]:
    """A notification's columns of what it waits for: whose names, and the values to render it again from; both
    None once every name is in."""
    return {"awaiting_names": unknown or None, "render_values": values if unknown else None}


EVENT_TYPES = sorted({*routing.RULES, "AccountRegistered", "MilestoneAdded", "MilestoneEdited"})
HANDLERS = {registry.ALL[event_type]: notify for event_type in EVENT_TYPES}
