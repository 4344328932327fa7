"""Charges and refunds: recorded by the consumer, claimed by the gateway loop (`FOR UPDATE SKIP LOCKED`),
listed while open. All in the unit of work's transaction."""

import base64
import json
from datetime import datetime
from typing import Any

from sqlalchemy import (
    DateTime, Integer, String, Text, bindparam, cast, func, literal, literal_column, null, select, text, tuple_,
    union_all, update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from platform_runtime import driver_sql
from platform_runtime.driver_sql import Fixed

from ..domain.gateway_work import OPEN, ChargeStatus, Operation, RefundStatus, VoidStatus
from ..domain.history import HistoryRow
from .charges_together import CHARGES, RECORD_CHARGE
from .history_rows import HISTORY_COLUMNS, HISTORY_TYPES
from .tables import billing_methods, bonus_charges, charges, refunds
from .wakeup import CHANNEL, OTHER_RECORDED

_WAKE = text(f"SELECT pg_notify('{CHANNEL}', '{OTHER_RECORDED}')")
_LISTED = ("saga_id", "contract_id", "client_id", "amount", "currency", "status", "attempts", "next_attempt_at",
           "give_up_at", "last_error", "reason_code", "message", "created_at")


class GatewayWork:
    """`primary_methods`: the clients' primary billing methods a batch's ChargeClient steps read ahead
    (charges_together.py), by client; None when the batch read none."""

    def __init__(self, session: AsyncConnection, primary_methods: dict[str, str | None] | None = None) -> None:
        self.session, self.primary_methods = session, primary_methods

    async def wake_loop(self) -> None:
        """Tell the gateway loops (every instance) that work was recorded; delivered at commit."""
        await self.session.execute(_WAKE)

    # -- charges ----------------------------------------------------------------------------
    async def charge(self, charge_id: str, lock: bool = False) -> dict[str, Any] | None:
        query = select(charges).where(charges.c.charge_id == charge_id)
        row = (await self.session.execute(query.with_for_update() if lock else query)).mappings().first()
        return dict(row) if row else None

    async def record_charge(self, values: dict[str, Any]) -> tuple[bool, str | None]:
        """A new pending charge to the client's primary billing method, and the loop woken, in one statement:
        (recorded, the method's id or None when the client has none). Not recorded: the charge id was taken
        already (the step again)."""
        methods, client = self.primary_methods, values["client_id"]
        if methods is None or client not in methods:
            row = await RECORD_CHARGE.fetchrow(self.session, values)
        elif (row := await driver_sql.write_together(self.session, CHARGES, (values, methods[client]))) is None:
            return True, methods[client]  # left for later, taken for granted (charges_together.py)
        return row["recorded"], row["billing_method_id"]

    async def due_charges(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` pending charges due, first due first, locked for this transaction (other workers and
        instances skip them), each with its card's token."""
        rows = await _DUE_CHARGES.fetch(self.session, {"now": now, "limit": limit})
        return [dict(r) for r in rows]

    async def settle_charges(self, outcomes: list[dict[str, Any]], cleared_clients: list[str],
                             history: list[HistoryRow], occurred_at: datetime) -> set[str]:
        """Each charge's outcome (keys of _SETTLED), the streaks of the clients whose charges all succeeded cleared,
        and the history rows not recorded yet, in one statement whatever their number; returns the transaction ids
        of the history rows that are new."""
        values = {f"s_{c}": v for c, v in _columns(outcomes, _SETTLED).items()}
        values |= {f"h_{c}": [getattr(r, c) for r in history] for c in HISTORY_COLUMNS}
        rows = await _SETTLE_CHARGES.fetch(self.session, {
            **values, "cleared_clients": cleared_clients, "occurred_at": occurred_at})
        return {row["transaction_id"] for row in rows}

    async def retry_charges(self, retries: list[dict[str, Any]]) -> None:
        """Charges unanswered, to be called again (keys of _RETRIED), in one statement whatever their number."""
        if retries:
            await _RETRY_CHARGES.execute(self.session, _columns(retries, _RETRIED))

    async def next_due_void(self, now: datetime) -> dict[str, Any] | None:
        """The given-up charge whose void is due first, locked for this transaction (others skip it)."""
        row = (await self.session.execute(
            select(charges).where(charges.c.void_status == VoidStatus.PENDING, charges.c.next_attempt_at <= now)
            .order_by(charges.c.next_attempt_at).limit(1).with_for_update(skip_locked=True))).mappings().first()
        return dict(row) if row else None

    async def update_charge(self, charge_id: str, **values: Any) -> None:
        await self.session.execute(update(charges).where(charges.c.charge_id == charge_id).values(**values))

    async def rest_due(self, now: datetime) -> set[Operation]:
        """Which of the rarer kinds of work (refund, void, bonus void) has a row due, in one statement."""
        row = (await self.session.execute(_REST_DUE, {"now": now})).one()
        return {Operation(kind) for kind, due in row._mapping.items() if due}

    # -- bonus batch charges given up --------------------------------------------------------
    async def next_due_bonus_void(self, now: datetime) -> dict[str, Any] | None:
        """The bonus charge given up unanswered whose void is due first, locked for this transaction."""
        row = (await self.session.execute(
            select(bonus_charges).where(bonus_charges.c.void_status == VoidStatus.PENDING,
                                        bonus_charges.c.retry_at <= now)
            .order_by(bonus_charges.c.retry_at).limit(1).with_for_update(skip_locked=True))).mappings().first()
        return dict(row) if row else None

    async def update_bonus_charge(self, charge_id: str, **values: Any) -> None:
        await self.session.execute(update(bonus_charges).where(bonus_charges.c.charge_id == charge_id).values(**values))

    # -- refunds ----------------------------------------------------------------------------
    async def refund(self, refund_id: str, lock: bool = False) -> dict[str, Any] | None:
        query = select(refunds).where(refunds.c.refund_id == refund_id)
        row = (await self.session.execute(query.with_for_update() if lock else query)).mappings().first()
        return dict(row) if row else None

    async def add_refund(self, **values: Any) -> None:
        await self.session.execute(insert(refunds).values(**values).on_conflict_do_nothing())

    async def next_due_refund(self, now: datetime) -> dict[str, Any] | None:
        """The pending refund due first, locked, with its charge's gateway reference and billing method."""
        row = (await self.session.execute(
            select(refunds, charges.c.gateway_reference.label("charge_reference"), charges.c.billing_method_id)
            .join(charges, charges.c.charge_id == refunds.c.charge_id)
            .where(refunds.c.status == RefundStatus.PENDING, refunds.c.next_attempt_at <= now)
            .order_by(refunds.c.next_attempt_at).limit(1)
            .with_for_update(of=refunds, skip_locked=True))).mappings().first()
        return dict(row) if row else None

    async def update_refund(self, refund_id: str, **values: Any) -> None:
        await self.session.execute(update(refunds).where(refunds.c.refund_id == refund_id).values(**values))

    # -- what is open -----------------------------------------------------------------------
    async def open_work(self, status: str | None, created_before: datetime | None, limit: int,
                        after: tuple[datetime, str] | None) -> list[dict[str, Any]]:
        """Open charges and refunds (pending, needs_attention), oldest first, one page after `after`."""
        parts = []
        for operation, table, key, state in ((Operation.CHARGE, charges, charges.c.charge_id, charges.c.status),
                                             (Operation.REFUND, refunds, refunds.c.refund_id, refunds.c.status),
                                             (Operation.VOID, charges, charges.c.charge_id, charges.c.void_status),
                                             (Operation.BONUS_VOID, bonus_charges, bonus_charges.c.charge_id,
                                              bonus_charges.c.void_status)):
            statuses = [s for s in OPEN[operation] if status in (None, s)]
            if not statuses:
                continue
            columns = _listed_columns(table, state)
            part = select(literal(str(operation)).label("operation"), key.label("work_id"),
                          *(columns[c] for c in _LISTED)).where(state.in_(statuses))
            if created_before is not None:
                part = part.where(columns["created_at"] < created_before)
            parts.append(part)
        if not parts:
            return []
        work = union_all(*parts).subquery()
        query = select(work).order_by(work.c.created_at, work.c.work_id).limit(limit)
        if after is not None:
            query = query.where(tuple_(work.c.created_at, work.c.work_id) > tuple_(*after))
        return [dict(r) for r in (await self.session.execute(query)).mappings()]

    async def counts(self) -> dict[tuple[str, str], int]:
        """(operation, status) -> rows, for the open statuses and the bonus batch's unanswered charges."""
        found: dict[tuple[str, str], int] = {(str(o), str(s)): 0 for o, statuses in OPEN.items() for s in statuses}
        found[("bonus_charge", "pending")] = 0
        for operation, status, count in await self.session.execute(_COUNTS):
            found[(operation, status)] = count
        return found


def _listed_columns(table, state) -> dict[str, Any]:
    """The listed columns of a table of work. A bonus charge has no saga nor contract (its batch is its saga:
    `bonus-batch-<day>`), waits on `retry_at` and was given up (its void began) at `settled_at`."""
    if table is not bonus_charges:
        return {c: state.label(c) if c == "status" else table.c[c] for c in _LISTED}
    t = table.c
    return {"saga_id": literal("bonus-batch-").concat(cast(t.business_date, String)).label("saga_id"),
            "contract_id": null().label("contract_id"), "client_id": t.client_id, "amount": t.amount,
            "currency": t.currency, "status": state.label("status"), "attempts": t.attempts,
            "next_attempt_at": t.retry_at.label("next_attempt_at"), "give_up_at": t.give_up_at,
            "last_error": t.last_error, "reason_code": t.reason_code, "message": t.message,
            "created_at": t.settled_at.label("created_at")}


# -- statements built once (building one costs more CPU than running it) ------------------------------------
# The gateway loop's statements, each run once per batch of charges: on the asyncpg connection too.
_DUE_CHARGES = Fixed.of(
    select(charges, billing_methods.c.token)
    .join(billing_methods, billing_methods.c.billing_method_id == charges.c.billing_method_id, isouter=True)
    .where(charges.c.status == literal_column(f"'{ChargeStatus.PENDING}'"),
           charges.c.next_attempt_at <= bindparam("now"))
    .order_by(charges.c.next_attempt_at).limit(bindparam("limit", type_=Integer))
    .with_for_update(of=charges, skip_locked=True))

# Each kind's "due" is the condition its claim (next_due_*) uses, so a partial index answers it (the status
# written into the statement, not bound: a generic plan could not match the index's predicate to a parameter).
_PENDING = literal_column(f"'{VoidStatus.PENDING}'")
_REST_DUE = select(*(select(table.c[key]).where(state == _PENDING, due_at <= bindparam("now")).exists()
                     .label(str(operation))
                     for operation, table, key, state, due_at in (
                         (Operation.REFUND, refunds, "refund_id", refunds.c.status, refunds.c.next_attempt_at),
                         (Operation.VOID, charges, "charge_id", charges.c.void_status, charges.c.next_attempt_at),
                         (Operation.BONUS_VOID, bonus_charges, "charge_id", bonus_charges.c.void_status,
                          bonus_charges.c.retry_at))))

_COUNTED = ((Operation.CHARGE, charges.c.status), (Operation.REFUND, refunds.c.status),
            (Operation.VOID, charges.c.void_status), ("bonus_charge", bonus_charges.c.status),
            (Operation.BONUS_VOID, bonus_charges.c.void_status))
_COUNTS = union_all(*(select(literal(str(operation)), state, func.count())
                      .where(state.in_(OPEN.get(operation, ("pending",)))).group_by(state)
                      for operation, state in _COUNTED))

_SETTLED = {"charge_id": String, "status": String, "attempts": Integer, "gateway_reference": String,
            "reason_code": String, "message": Text, "settled_at": DateTime(timezone=True), "void_status": String,
            "next_attempt_at": DateTime(timezone=True)}
_RETRIED = {"charge_id": String, "attempts": Integer, "next_attempt_at": DateTime(timezone=True),
            "give_up_at": DateTime(timezone=True), "last_error": Text}


def _update_from_arrays(table, key: str, columns: dict[str, Any]):
    """UPDATE of many rows by key from one array per column (unnested): one statement text for any number."""
    names = list(columns)
    sql = (f"UPDATE {table.name} SET {', '.join(f'{c} = v.{c}' for c in names if c != key)} "
           f"FROM unnest({', '.join(':' + c for c in names)}) AS v({', '.join(names)}) "
           f"WHERE {table.name}.{key} = v.{key}")
    return text(sql).bindparams(*(bindparam(c, type_=ARRAY(t)) for c, t in columns.items()))


# The charges' outcomes, the streaks cleared and the history, one statement: data-modifying CTEs all run, on
# tables apart, whether or not the query reads them.
_SETTLE_CHARGES = Fixed.of(text(
    "WITH cleared AS (DELETE FROM client_charge_streaks WHERE client_id = ANY(:cleared_clients)), "
    f"settled AS (UPDATE charges SET {', '.join(f'{c} = v.{c}' for c in _SETTLED if c != 'charge_id')} "
    f"FROM unnest({', '.join(':s_' + c for c in _SETTLED)}) AS v({', '.join(_SETTLED)}) "
    "WHERE charges.charge_id = v.charge_id) "
    f"INSERT INTO transactions (occurred_at, {', '.join(HISTORY_COLUMNS)}) "
    f"SELECT :occurred_at, * FROM unnest({', '.join(':h_' + c for c in HISTORY_COLUMNS)}) "
    "ON CONFLICT DO NOTHING RETURNING transaction_id"
).bindparams(bindparam("cleared_clients", type_=ARRAY(String)),
             bindparam("occurred_at", type_=DateTime(timezone=True)),
             *(bindparam(f"s_{c}", type_=ARRAY(t)) for c, t in _SETTLED.items()),
             *(bindparam(f"h_{c}", type_=ARRAY(HISTORY_TYPES.get(c, String))) for c in HISTORY_COLUMNS)),
    plan_once=True)
_RETRY_CHARGES = Fixed.of(_update_from_arrays(charges, "charge_id", _RETRIED))


def _columns(rows: list[dict[str, Any]], columns: dict[str, Any]) -> dict[str, list[Any]]:
    return {c: [r[c] for r in rows] for c in columns}


def page_token(row: dict[str, Any]) -> str:
    raw = json.dumps([row["created_at"].isoformat(), row["work_id"]])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def parse_page_token(token: str) -> tuple[datetime, str]:
    """The position after which the next page starts; ValueError if the token was not made by page_token."""
    try:
        created_at, work_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(created_at), str(work_id)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not a page token: {token!r}") from error
