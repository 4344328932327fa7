"""How the consumer records a ChargeClient step's charge: alone, or a batch's together (issue 10, thirty-sixth step).

A charge goes to its client's primary billing method, which the handler reads (no method: the charge fails at once).
Alone, one statement records the charge and answers that method (`RECORD_CHARGE`). Read ahead, one statement finds
the methods of every client a batch's steps charge (`primary_methods`), and the charges are left for later and
written as one statement a run (`CHARGES`, driver_sql.write_together), taken for granted as recorded to the method
read. A charge id taken (the step again) or another method by then fails the batch, which is handled again one
savepoint each, where each charge's own statement answers (`GatewayWork.record_charge`).
"""

import json
from typing import Any

import asyncpg
from platform_runtime import driver_sql
from platform_runtime.driver_sql import Fixed
from platform_runtime.errors import IsolationNeeded
from sqlalchemy import bindparam, exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import billing_methods, charges
from .wakeup import CHANNEL, CHARGE_RECORDED

BATCH_KEY = "billing.primary_methods"  # where a batch's methods read ahead are kept (`UnitOfWork.batch`)

_PRIMARY_METHODS = driver_sql.planned_once("""
SELECT c.client_id, m.billing_method_id
FROM unnest($1::varchar[]) AS c(client_id)
LEFT JOIN billing_methods m ON m.account_id = c.client_id AND m.is_primary AND m.removed_at IS NULL
""")

# A charge's columns as the consumer records it, and their arrays' types for a run of them.
RECORDED = ("charge_id", "saga_id", "contract_id", "client_id", "amount", "currency", "purpose", "milestones",
            "status", "created_at", "next_attempt_at", "correlation_id", "causation_id", "actor", "traceparent",
            "tracestate")
_TYPES = {"amount": "bigint[]", "created_at": "timestamptz[]", "next_attempt_at": "timestamptz[]"}
_FROM_TEXT = {"milestones": "g.milestones::jsonb"}  # given as JSON text: an array of arrays would need one length

# The run's charges to each one's client's primary method, found again by the statement (as one charge's own
# statement finds it); answers the ids recorded and the method each was recorded to. The gateway loops are woken
# at commit, once.
_RECORD_CHARGES = f"""
WITH recorded AS (
    INSERT INTO charges ({", ".join(RECORDED)}, billing_method_id)
    SELECT {", ".join(_FROM_TEXT.get(c, f"g.{c}") for c in RECORDED)},
           (SELECT m.billing_method_id FROM billing_methods m
            WHERE m.account_id = g.client_id AND m.is_primary AND m.removed_at IS NULL)
    FROM unnest({", ".join(f"${i}::{_TYPES.get(c, 'varchar[]')}" for i, c in enumerate(RECORDED, 1))})
         AS g({", ".join(RECORDED)})
    ON CONFLICT (charge_id) DO NOTHING
    RETURNING charge_id, billing_method_id
), woken AS (
    SELECT pg_notify('{CHANNEL}', '{CHARGE_RECORDED}') FROM recorded LIMIT 1
)
SELECT array_agg(charge_id) AS charge_ids, array_agg(billing_method_id) AS methods,
       (SELECT count(*) FROM woken) AS woken
FROM recorded
"""

# One charge: recorded to its client's primary billing method (domain/billing_methods.py: at most one per account),
# unless its id is taken; answers one row, whether it was recorded and to which method. The NOTIFY is delivered at
# commit, and only when the charge is new. On the transaction's asyncpg connection (driver_sql.Fixed).
_PRIMARY_METHOD = (select(billing_methods.c.billing_method_id)
                   .where(billing_methods.c.account_id == bindparam("client_id"), billing_methods.c.is_primary,
                          billing_methods.c.removed_at.is_(None)).scalar_subquery())
_NEW_CHARGE = (insert(charges).values({c: bindparam(c, type_=charges.c[c].type) for c in RECORDED}
                                      | {"billing_method_id": _PRIMARY_METHOD})
               .on_conflict_do_nothing(index_elements=[charges.c.charge_id])
               .returning(charges.c.billing_method_id).cte("new_charge"))
RECORD_CHARGE = Fixed.of(select(
    exists(select(_NEW_CHARGE.c.billing_method_id)).label("recorded"),
    select(_NEW_CHARGE.c.billing_method_id).scalar_subquery().label("billing_method_id"),
    select(func.pg_notify(CHANNEL, CHARGE_RECORDED)).select_from(_NEW_CHARGE).scalar_subquery().label("woken")))


async def primary_methods(session: AsyncConnection, client_ids: list[str]) -> dict[str, str | None]:
    """Each client's primary billing method (None: none), in one statement."""
    driver = await driver_sql.in_transaction(session)
    return {row["client_id"]: row["billing_method_id"] for row in await driver.fetch(_PRIMARY_METHODS, client_ids)}


class Charges:
    """Charges left for later, each with the method read ahead for it: a run of them one statement."""

    merge_from = 2  # one charge: its own statement (`alone`), cheaper than a statement over sixteen arrays
    gathered = False  # see driver_sql.Together: a failed charge's outcome is written after its record

    def alone(self, item: tuple[dict[str, Any], str | None]) -> tuple[str, tuple, driver_sql.Expect]:
        values, method = item
        return (RECORD_CHARGE.sql, tuple(RECORD_CHARGE.args(values)),
                lambda row: row["recorded"] and row["billing_method_id"] == method)

    async def write_all(self, driver: asyncpg.Connection, items: list[tuple[dict[str, Any], str | None]]) -> None:
        columns = [[json.dumps(values["milestones"]) if c == "milestones" else values[c] for values, _ in items]
                   for c in RECORDED]
        answer = await driver.fetchrow(_RECORD_CHARGES, *columns)
        recorded = dict(zip(answer["charge_ids"] or (), answer["methods"] or ()))
        if len(recorded) != len(items) or any(recorded.get(values["charge_id"], "") != method
                                               for values, method in items):
            raise IsolationNeeded("a charge was recorded already, or its client's primary method changed")


CHARGES = Charges()
