"""Reads and writes notifications' tables inside the caller's transaction.

The statements of the hot path (an event's projection, lookup and notification rows; the delivery loop's
claim and outcomes) are built once, here, and each does its whole set in one round trip: building a
statement per call cost more CPU than running it, and each round trip costs a write to the socket.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..domain.delivery import PENDING
from ..domain.routing import Parties
from .tables import accounts, notifications

# Sent with the insert of a pending email (so: at its commit); the delivery loops LISTEN to it.
EMAILS_DUE_CHANNEL = "notifications_emails_due"

_SAVE_ACCOUNT = insert(accounts).values(
    {c: bindparam(c, type_=accounts.c[c].type) for c in ("account_id", "role", "name", "email")})
_SAVE_ACCOUNT = _SAVE_ACCOUNT.on_conflict_do_update(
    index_elements=["account_id"],
    set_={"role": _SAVE_ACCOUNT.excluded.role, "name": _SAVE_ACCOUNT.excluded.name,
          "email": _SAVE_ACCOUNT.excluded.email})

_ACCOUNT = select(accounts).where(accounts.c.account_id == bindparam("account_id"))

# A contract's parties and its milestones, in one statement. A later event without a title must not
# erase the one OfferSent gave.
_SAVE_CONTRACT = text("""
WITH saved_contract AS (
    INSERT INTO contracts (contract_id, client_id, freelancer_id, currency, title)
    VALUES (:contract_id, :client_id, :freelancer_id, :currency, :title)
    ON CONFLICT (contract_id) DO UPDATE SET client_id = EXCLUDED.client_id,
        freelancer_id = EXCLUDED.freelancer_id, currency = EXCLUDED.currency,
        title = coalesce(EXCLUDED.title, contracts.title)
)
INSERT INTO milestones (milestone_id, contract_id, title, amount)
SELECT m.milestone_id, :contract_id, m.title, m.amount
FROM unnest(CAST(:milestone_ids AS text[]), CAST(:titles AS text[]), CAST(:amounts AS bigint[]))
     AS m(milestone_id, title, amount)
ON CONFLICT (milestone_id) DO UPDATE SET title = EXCLUDED.title, amount = EXCLUDED.amount
""")

_SAVE_MILESTONE = text("""
INSERT INTO milestones (milestone_id, contract_id, title, amount) VALUES (:milestone_id, :contract_id, :title, :amount)
ON CONFLICT (milestone_id) DO UPDATE SET title = EXCLUDED.title, amount = EXCLUDED.amount
""")

# Everything an event's notifications need to be addressed and rendered, in one round trip: the contract's
# parties (when it names a contract), the milestone's title, and the names of the accounts it may name
# (those given, plus the contract's parties).
_LOOKUP = text("""
SELECT c.client_id, c.freelancer_id, c.currency, c.title,
       (SELECT m.title FROM milestones m WHERE m.milestone_id = :milestone_id) AS milestone_title,
       a.ids AS account_ids, a.names AS account_names
FROM (SELECT 1) AS one
LEFT JOIN contracts c ON c.contract_id = :contract_id
LEFT JOIN LATERAL (
    SELECT array_agg(account_id) AS ids, array_agg(name) AS names FROM accounts
    WHERE account_id = ANY(CAST(:account_ids AS text[])) OR account_id = c.client_id OR account_id = c.freelancer_id
) AS a ON true
""")

NOTIFICATION_COLUMNS = ("notification_id", "event_id", "event_type", "kind", "account_id", "channel", "contract_id",
                        "subject", "body_text", "body_html", "status", "next_attempt_at", "created_at",
                        "delivered_at")
_ARRAY_TYPES = {"next_attempt_at": "timestamptz[]", "created_at": "timestamptz[]", "delivered_at": "timestamptz[]"}
# An event's notification rows, every channel, in one statement; a row this event already gave (redelivery)
# is left alone. A pending email announces itself to the delivery loops, delivered at commit.
_ADD = text(f"""
WITH added AS (
    INSERT INTO notifications ({", ".join(NOTIFICATION_COLUMNS)})
    SELECT * FROM unnest({", ".join(f"CAST(:{c} AS {_ARRAY_TYPES.get(c, 'text[]')})" for c in NOTIFICATION_COLUMNS)})
    ON CONFLICT DO NOTHING
    RETURNING notification_id, channel, status
)
SELECT notification_id, channel,
       CASE WHEN status = '{PENDING}' THEN pg_notify('{EMAILS_DUE_CHANNEL}', '') END AS announced
FROM added
""")

# The oldest due emails, locked, with their recipient's address: other instances and workers skip them.
_CLAIM_DUE = text(f"""
SELECT n.notification_id, n.event_id, n.kind, n.account_id, n.contract_id, n.subject, n.body_text, n.body_html,
       n.attempts, a.name AS recipient_name, a.email AS recipient_email
FROM notifications n LEFT JOIN accounts a ON a.account_id = n.account_id
WHERE n.status = '{PENDING}' AND n.next_attempt_at <= :now
ORDER BY n.next_attempt_at
LIMIT :limit
FOR UPDATE OF n SKIP LOCKED
""")

OUTCOME_COLUMNS = ("notification_id", "status", "attempts", "next_attempt_at", "last_error", "delivered_at")
# Every outcome of a delivery pass in one statement.
_RECORD_OUTCOMES = text("""
UPDATE notifications AS n
SET status = o.status, attempts = o.attempts, next_attempt_at = o.next_attempt_at, last_error = o.last_error,
    delivered_at = o.delivered_at
FROM unnest(CAST(:notification_id AS text[]), CAST(:status AS text[]), CAST(:attempts AS integer[]),
            CAST(:next_attempt_at AS timestamptz[]), CAST(:last_error AS text[]),
            CAST(:delivered_at AS timestamptz[]))
     AS o(notification_id, status, attempts, next_attempt_at, last_error, delivered_at)
WHERE n.notification_id = o.notification_id
""")


@dataclass(frozen=True)
class Known:
    """What the projection knows for one event: the contract's parties and the names of its accounts."""

    parties: Parties | None
    milestone_title: str | None
    names: dict[str, str]


def _columns(rows: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in names}


class NotificationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- projections ---------------------------------------------------------------------------
    async def save_account(self, account_id: str, role: str, name: str, email: str) -> None:
        await self.session.execute(_SAVE_ACCOUNT, {"account_id": account_id, "role": role, "name": name,
                                                   "email": email})

    async def account(self, account_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(_ACCOUNT, {"account_id": account_id})).mappings().first()
        return dict(row) if row else None

    async def save_contract(self, parties: Parties, milestones: list[tuple[str, str, int]] = ()) -> None:
        """The parties and (OfferSent) the milestones (id, title, amount) of a contract."""
        by_id = {m[0]: m for m in milestones}  # one row per id, the last one given (as one upsert each would)
        await self.session.execute(_SAVE_CONTRACT, {
            "contract_id": parties.contract_id, "client_id": parties.client_id,
            "freelancer_id": parties.freelancer_id, "currency": parties.currency, "title": parties.title,
            "milestone_ids": list(by_id), "titles": [m[1] for m in by_id.values()],
            "amounts": [m[2] for m in by_id.values()]})

    async def save_milestone(self, milestone_id: str, contract_id: str, title: str, amount: int) -> None:
        await self.session.execute(_SAVE_MILESTONE, {"milestone_id": milestone_id, "contract_id": contract_id,
                                                     "title": title, "amount": amount})

    async def lookup(self, contract_id: str | None, milestone_id: str | None, account_ids: list[str]) -> Known:
        row = (await self.session.execute(_LOOKUP, {
            "contract_id": contract_id, "milestone_id": milestone_id, "account_ids": account_ids})).mappings().one()
        parties = Parties(contract_id, row["client_id"], row["freelancer_id"], row["currency"], row["title"]) \
            if row["client_id"] is not None else None
        names = dict(zip(row["account_ids"] or (), row["account_names"] or ()))
        return Known(parties, row["milestone_title"], names)

    # -- notifications -------------------------------------------------------------------------
    async def add(self, rows: list[dict[str, Any]]) -> set[str]:
        """Insert an event's notifications; returns the ids inserted (not those a redelivery already gave)."""
        if not rows:
            return set()
        added = await self.session.execute(_ADD, _columns(rows, NOTIFICATION_COLUMNS))
        return {row.notification_id for row in added}

    async def claim_due_emails(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` due pending emails, oldest first, locked until this transaction ends."""
        rows = await self.session.execute(_CLAIM_DUE, {"now": now, "limit": limit})
        return [dict(r) for r in rows.mappings()]

    async def record_outcomes(self, outcomes: list[dict[str, Any]]) -> None:
        """Each email's new status, attempts, next attempt and error, in one statement."""
        if outcomes:
            await self.session.execute(_RECORD_OUTCOMES, _columns(outcomes, OUTCOME_COLUMNS))

    async def for_account(self, account_id: str, limit: int, before_seq: int | None) -> list[dict[str, Any]]:
        """Newest first; `before_seq` is the cursor of the previous page."""
        query = select(notifications).where(notifications.c.account_id == account_id)
        if before_seq is not None:
            query = query.where(notifications.c.seq < before_seq)
        rows = await self.session.execute(query.order_by(notifications.c.seq.desc()).limit(limit))
        return [dict(r) for r in rows.mappings()]

    async def knows_account(self, account_id: str) -> bool:
        if await self.account(account_id):
            return True
        found = await self.session.scalar(
            select(notifications.c.notification_id).where(notifications.c.account_id == account_id).limit(1))
        return found is not None
