"""Reads and writes notifications' tables inside the caller's transaction.

The statements of the hot path (an event's projection, lookup and notification rows; the delivery loop's
claim and outcomes) are fixed SQL, run on the transaction's own asyncpg connection (prepared once per
connection, like the runtime's, platform_runtime/driver_sql.py), and each does its whole set in one round
trip: through SQLAlchemy, building a statement cost more CPU than running it, and each round trip costs a
write to the socket. The read side (HTTP) keeps SQLAlchemy Core.
"""

import json
from datetime import datetime
from typing import Any

import asyncpg
from platform_runtime import driver_sql
from platform_runtime.errors import IsolationNeeded
from pydantic_core import to_jsonable_python
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ..domain.delivery import PENDING
from ..domain.routing import Parties
from .projection import BatchProjection, Known
from .tables import accounts, notifications

# Sent with the insert of a pending email (so: at its commit); the delivery loops LISTEN to it.
EMAILS_DUE_CHANNEL = "notifications_emails_due"

# The names of the accounts a condition picks, as two arrays (ids, names) in one row: joined LATERAL by every statement
# that answers an event's or a notification's names (read back by `_names`).
def _names_of(accounts_where: str) -> str:
    return f"""LEFT JOIN LATERAL (
    SELECT array_agg(account_id) AS account_ids, array_agg(name) AS account_names FROM accounts
    WHERE {accounts_where}
) AS a ON true"""


# A person, and in the same round trip the notifications that wait for their name (domain/names.py), with the names
# of the others each waits for that are known. The read sees the snapshot before the insert: the new name is the
# caller's. Those rows are rare and found through their partial index. An email that already left with stand-ins
# keeps the text it was sent with (and whose names it lacked).
_SAVE_ACCOUNT = f"""
WITH saved AS (
    INSERT INTO accounts (account_id, role, name, email) VALUES ($1, $2, $3, $4)
    ON CONFLICT (account_id) DO UPDATE SET role = EXCLUDED.role, name = EXCLUDED.name, email = EXCLUDED.email
)
SELECT n.notification_id, n.kind, n.channel, n.status, n.awaiting_names, n.render_values::text AS render_values,
       a.account_ids, a.account_names
FROM notifications n
{_names_of("account_id = ANY(n.awaiting_names)")}
WHERE n.awaiting_names IS NOT NULL AND n.awaiting_names @> ARRAY[$1]::varchar[]
  AND (n.channel <> 'email' OR n.status = '{PENDING}')
"""

_ACCOUNT = select(accounts).where(accounts.c.account_id == bindparam("account_id"))

# A contract's parties ($1-$5) and its milestones ($6-$8 as arrays): the two parts of every save of a contract. A
# later event without a title must not erase the one OfferSent gave.
_UPSERT_CONTRACT = """INSERT INTO contracts (contract_id, client_id, freelancer_id, currency, title)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (contract_id) DO UPDATE SET client_id = EXCLUDED.client_id,
        freelancer_id = EXCLUDED.freelancer_id, currency = EXCLUDED.currency,
        title = coalesce(EXCLUDED.title, contracts.title)"""
_UPSERT_MILESTONES = """INSERT INTO milestones (milestone_id, contract_id, title, amount)
    SELECT m.milestone_id, $1, m.title, m.amount
    FROM unnest($6::text[], $7::text[], $8::bigint[]) AS m(milestone_id, title, amount)
    ON CONFLICT (milestone_id) DO UPDATE SET title = EXCLUDED.title, amount = EXCLUDED.amount"""

# A contract saved, and what its event's notifications need (as _LOOKUP below), in one statement: the contract's
# row as saved (RETURNING) has the title kept. The lookup's reads see the snapshot before the inserts, so a
# milestone this statement saves has its title from the parameters.
_SAVE_CONTRACT_AND_LOOKUP = f"""
WITH saved_contract AS (
    {_UPSERT_CONTRACT}
    RETURNING client_id, freelancer_id, currency, title
), saved_milestones AS (
    {_UPSERT_MILESTONES}
)
SELECT c.client_id, c.freelancer_id, c.currency, c.title,
       coalesce((SELECT m.title FROM unnest($6::text[], $7::text[]) AS m(milestone_id, title)
                 WHERE m.milestone_id = $9),
                (SELECT m.title FROM milestones m WHERE m.milestone_id = $9)) AS milestone_title,
       a.account_ids, a.account_names
FROM saved_contract c
{_names_of("account_id = ANY($10::text[]) OR account_id = c.client_id OR account_id = c.freelancer_id")}
"""

# The same save when a batch's projection answers the lookup (projection.py): a write left for later.
_SAVE_CONTRACT = f"""
WITH saved_contract AS (
    {_UPSERT_CONTRACT}
)
{_UPSERT_MILESTONES}
"""

_SAVE_MILESTONE = """
INSERT INTO milestones (milestone_id, contract_id, title, amount) VALUES ($1, $2, $3, $4)
ON CONFLICT (milestone_id) DO UPDATE SET title = EXCLUDED.title, amount = EXCLUDED.amount
"""

# Everything an event's notifications need to be addressed and rendered, in one round trip: the contract's
# parties (when it names a contract), the milestone's title, and the names of the accounts it may name
# (those given, plus the contract's parties).
_LOOKUP = f"""
SELECT c.client_id, c.freelancer_id, c.currency, c.title,
       (SELECT m.title FROM milestones m WHERE m.milestone_id = $2) AS milestone_title,
       a.account_ids, a.account_names
FROM (SELECT 1) AS one
LEFT JOIN contracts c ON c.contract_id = $1
{_names_of("account_id = ANY($3::text[]) OR account_id = c.client_id OR account_id = c.freelancer_id")}
"""

# What every event of a fetched batch may look up, in one statement (projection.py): the contracts ($1) with the
# ids of their parties, the milestones' titles ($2), and the names of the accounts given ($3) and of those contracts'
# parties.
_READ_AHEAD = driver_sql.planned_once("""
WITH found AS (SELECT contract_id, client_id, freelancer_id, currency, title FROM contracts
               WHERE contract_id = ANY($1::text[]))
SELECT 'contract' AS what, contract_id AS id, client_id, freelancer_id, currency, title FROM found
UNION ALL
SELECT 'milestone', milestone_id, NULL, NULL, NULL, title FROM milestones WHERE milestone_id = ANY($2::text[])
UNION ALL
SELECT 'account', a.account_id, NULL, NULL, NULL, a.name
FROM (SELECT unnest($3::text[]) UNION SELECT client_id FROM found UNION SELECT freelancer_id FROM found) AS ids(id)
JOIN accounts a ON a.account_id = ids.id
""")

NOTIFICATION_COLUMNS = ("notification_id", "event_id", "event_type", "kind", "account_id", "channel", "contract_id",
                        "subject", "body_text", "body_html", "status", "next_attempt_at", "created_at",
                        "delivered_at", "awaiting_names", "render_values")
_ARRAY_TYPES = {"next_attempt_at": "timestamptz[]", "created_at": "timestamptz[]", "delivered_at": "timestamptz[]"}
# Given as text (unnest takes no array of arrays of different lengths): the ids space-separated (ids have no
# spaces, platform_schemas.types.Id), the values as JSON: `_TO_TEXT` writes them so, `_FROM_TEXT` reads them.
_FROM_TEXT = {"awaiting_names": "string_to_array(awaiting_names, ' ')", "render_values": "render_values::jsonb"}
_TO_TEXT = {"awaiting_names": lambda ids: " ".join(ids) if ids else None,
            "render_values": lambda values: values_as_json(values) if values is not None else None}


def values_as_json(values: dict[str, Any]) -> str:
    """A notification's template values as kept to render it again (dates and moments become ISO strings)."""
    return json.dumps(to_jsonable_python(values))


# Events' notification rows, every channel, in one statement; a row an event already gave (redelivered after its
# inbox row was pruned) is left alone. Answers one row: the ids inserted. A pending email announces itself to the
# delivery loops, delivered at commit (once a statement: PostgreSQL folds a transaction's equal notifications).
_ADD = f"""
WITH added AS (
    INSERT INTO notifications ({", ".join(NOTIFICATION_COLUMNS)})
    SELECT {", ".join(_FROM_TEXT.get(c, c) for c in NOTIFICATION_COLUMNS)}
    FROM unnest({", ".join(f"${i}::{_ARRAY_TYPES.get(c, 'text[]')}" for i, c in enumerate(NOTIFICATION_COLUMNS, 1))})
         AS given({", ".join(NOTIFICATION_COLUMNS)})
    ON CONFLICT DO NOTHING
    RETURNING notification_id, status
), announced AS (
    SELECT pg_notify('{EMAILS_DUE_CHANNEL}', '') FROM added WHERE status = '{PENDING}' LIMIT 1
)
SELECT array_agg(notification_id) AS added, (SELECT count(*) FROM announced) AS announced FROM added
"""


class _Adds:
    """Events' notification rows left for later (driver_sql.write_together): a run of events' rows is one `_ADD`,
    taken for granted as all inserted (a fresh inbox claim means none is there). Fewer inserted fails the batch,
    which is handled again one event at a time, each reading what it inserted."""

    merge_from = 1  # `_ADD` is set-based already: one event's rows or a run's cost one statement
    # Nothing else left for later writes notifications, and they name the contracts' and people's rows by id only
    # (no foreign key): the batch's rows go as one run after the projections' saves.
    gathered = True

    def alone(self, rows: list[dict[str, Any]]) -> tuple[str, tuple, driver_sql.Expect]:
        return _ADD, tuple(_columns(rows, NOTIFICATION_COLUMNS)), lambda answer: _count(answer) == len(rows)

    async def write_all(self, driver: asyncpg.Connection, items: list[list[dict[str, Any]]]) -> None:
        rows = [row for item in items for row in item]
        if _count(await driver.fetchrow(_ADD, *_columns(rows, NOTIFICATION_COLUMNS))) != len(rows):
            raise IsolationNeeded("an event's notifications were there already")


def _count(answer: asyncpg.Record) -> int:
    return len(answer["added"] or ())


_ADDS = _Adds()

FILLED_IN_COLUMNS = ("notification_id", "subject", "body_text", "body_html", "awaiting_names", "render_values",
                     "due_now")
# Notifications rendered again with the names they waited for; an email with all its names is due now (and
# announced to the delivery loops at commit).
_FILL_IN_NAMES = f"""
WITH filled AS (
    UPDATE notifications AS n
    SET subject = f.subject, body_text = f.body_text, body_html = f.body_html,
        awaiting_names = string_to_array(f.awaiting_names, ' '), render_values = f.render_values::jsonb,
        next_attempt_at = CASE WHEN f.due_now THEN $8 ELSE n.next_attempt_at END
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[])
         AS f({", ".join(FILLED_IN_COLUMNS)})
    WHERE n.notification_id = f.notification_id
    RETURNING f.due_now
)
SELECT pg_notify('{EMAILS_DUE_CHANNEL}', '') FROM filled WHERE due_now LIMIT 1
"""

# The oldest due emails, locked, with their recipient's address: other instances and workers skip them.
_CLAIM_DUE = f"""
SELECT n.notification_id, n.event_id, n.kind, n.account_id, n.contract_id, n.subject, n.body_text, n.body_html,
       n.attempts, n.awaiting_names, a.name AS recipient_name, a.email AS recipient_email
FROM notifications n LEFT JOIN accounts a ON a.account_id = n.account_id
WHERE n.status = '{PENDING}' AND n.next_attempt_at <= $1
ORDER BY n.next_attempt_at
LIMIT $2
FOR UPDATE OF n SKIP LOCKED
"""

OUTCOME_COLUMNS = ("notification_id", "status", "attempts", "next_attempt_at", "last_error", "delivered_at")
# Every outcome of a delivery pass in one statement.
_RECORD_OUTCOMES = """
UPDATE notifications AS n
SET status = o.status, attempts = o.attempts, next_attempt_at = o.next_attempt_at, last_error = o.last_error,
    delivered_at = o.delivered_at
FROM unnest($1::text[], $2::text[], $3::integer[], $4::timestamptz[], $5::text[], $6::timestamptz[])
     AS o(notification_id, status, attempts, next_attempt_at, last_error, delivered_at)
WHERE n.notification_id = o.notification_id
"""


def _known(contract_id: str | None, row: asyncpg.Record) -> Known:
    parties = Parties(contract_id, row["client_id"], row["freelancer_id"], row["currency"], row["title"]) \
        if row["client_id"] is not None else None
    return Known(parties, row["milestone_title"], _names(row))


def _names(row: asyncpg.Record) -> dict[str, str]:
    """What `_names_of` answered: the names by account id (none found: NULL arrays)."""
    return dict(zip(row["account_ids"] or (), row["account_names"] or ()))


def _columns(rows: list[dict[str, Any]], names: tuple[str, ...]) -> list[list[Any]]:
    return [[_TO_TEXT[name](row[name]) if name in _TO_TEXT else row[name] for row in rows] for name in names]


class NotificationRepository:
    """On a unit of work's connection (`uow.session`) for the hot path, or an HTTP request's session (reads). With
    the batch's projection read ahead (`ahead`, projection.py), lookups it covers are answered from it and the
    projections' saves are left for later."""

    def __init__(self, session: AsyncConnection | AsyncSession, ahead: BatchProjection | None = None) -> None:
        self.session, self.ahead = session, ahead

    async def _driver(self) -> asyncpg.Connection:
        return await driver_sql.in_transaction(self.session)

    async def read_ahead(self, contract_ids: list[str], milestone_ids: list[str],
                         account_ids: list[str]) -> BatchProjection:
        """What a batch's events may look up, in one statement: these contracts, milestones and accounts, and the
        parties of those contracts."""
        contracts, milestones, names = {}, {}, {}
        for row in await (await self._driver()).fetch(_READ_AHEAD, contract_ids, milestone_ids, account_ids):
            if row["what"] == "contract":
                contracts[row["id"]] = Parties(row["id"], row["client_id"], row["freelancer_id"], row["currency"],
                                               row["title"])
            elif row["what"] == "milestone":
                milestones[row["id"]] = row["title"]
            else:
                names[row["id"]] = row["title"]
        parties = (person for p in contracts.values() for person in (p.client_id, p.freelancer_id))
        return BatchProjection(contracts, milestones, names, frozenset(contract_ids), frozenset(milestone_ids),
                               frozenset((*account_ids, *parties)))

    # -- projections ---------------------------------------------------------------------------
    async def save_account(self, account_id: str, role: str, name: str, email: str) -> list[dict[str, Any]]:
        """Save a person; returns the notifications waiting for their name, each with `names`: the names known
        of the others it waits for (the new one is not among them: the caller has it)."""
        waiting = [{**dict(r), "render_values": json.loads(r["render_values"]), "names": _names(r)}
                   for r in await (await self._driver()).fetch(_SAVE_ACCOUNT, account_id, role, name, email)]
        if self.ahead is not None:
            self.ahead.registered(account_id, name)
        return waiting

    async def account(self, account_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(_ACCOUNT, {"account_id": account_id})).mappings().first()
        return dict(row) if row else None

    async def save_contract(self, parties: Parties, milestones: list[tuple[str, str, int]], milestone_id: str | None,
                            account_ids: list[str]) -> Known:
        """Save the parties and (OfferSent) the milestones (id, title, amount) of a contract, and return what
        `lookup` would return after it: from the batch's projection, the save left for later, when it covers
        them; else one round trip for the projection and the lookup of the event."""
        by_id = {m[0]: m for m in milestones}  # one row per id, the last one given (as one upsert each would)
        arguments = (parties.contract_id, parties.client_id, parties.freelancer_id, parties.currency, parties.title,
                     list(by_id), [m[1] for m in by_id.values()], [m[2] for m in by_id.values()])
        ahead = self.ahead
        if ahead is not None and ahead.covers(parties.contract_id, milestone_id,
                                              [*account_ids, parties.client_id, parties.freelancer_id]):
            await driver_sql.write_later(self.session, _SAVE_CONTRACT, *arguments)
            return ahead.contract_saved(parties, by_id, milestone_id)
        row = await (await self._driver()).fetchrow(_SAVE_CONTRACT_AND_LOOKUP, *arguments, milestone_id, account_ids)
        known = _known(parties.contract_id, row)
        if ahead is not None:  # kept in step for the batch's later lookups, with the title as saved
            ahead.contract_saved(known.parties, by_id, milestone_id)
        return known

    async def save_milestone(self, milestone_id: str, contract_id: str, title: str, amount: int) -> None:
        await driver_sql.write_later(self.session, _SAVE_MILESTONE, milestone_id, contract_id, title, amount)
        if self.ahead is not None:
            self.ahead.milestone_saved(milestone_id, title)

    async def lookup(self, contract_id: str | None, milestone_id: str | None, account_ids: list[str]) -> Known:
        if self.ahead is not None and self.ahead.covers(contract_id, milestone_id, account_ids):
            return self.ahead.known(contract_id, milestone_id)
        return _known(contract_id, await (await self._driver()).fetchrow(_LOOKUP, contract_id, milestone_id,
                                                                         account_ids))

    # -- notifications -------------------------------------------------------------------------
    async def add(self, rows: list[dict[str, Any]]) -> set[str]:
        """Insert an event's notifications; returns the ids inserted (not those a redelivery already gave): all of
        them when the insert is left for later, where fewer inserted fails the batch (`_Adds`)."""
        if not rows:
            return set()
        answer = await driver_sql.write_together(self.session, _ADDS, rows)
        return {row["notification_id"] for row in rows} if answer is None else set(answer["added"] or ())

    async def fill_in_names(self, rows: list[dict[str, Any]], now: datetime) -> None:
        """Each notification's text rendered again, what it still waits for, and whether its email is due now."""
        if rows:
            await (await self._driver()).fetch(_FILL_IN_NAMES, *_columns(rows, FILLED_IN_COLUMNS), now)

    async def claim_due_emails(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` due pending emails, oldest first, locked until this transaction ends."""
        return [dict(r) for r in await (await self._driver()).fetch(_CLAIM_DUE, now, limit)]

    async def record_outcomes(self, outcomes: list[dict[str, Any]]) -> None:
        """Each email's new status, attempts, next attempt and error, in one statement."""
        if outcomes:
            await (await self._driver()).execute(_RECORD_OUTCOMES, *_columns(outcomes, OUTCOME_COLUMNS))

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
