"""The `transactions` table's history rows: one column list and one insert for everything that writes them (the
bonus batch's credits, releases and refunds; the gateway work folds the same columns into its own statement)."""

from datetime import datetime

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.ext.asyncio import AsyncConnection

from platform_runtime import driver_sql

from ..domain.history import HistoryRow

HISTORY_COLUMNS = ("transaction_id", "account_id", "kind", "description", "amount", "currency", "contract_id",
                   "milestone_id", "bonus_id", "available_at")
HISTORY_TYPES = {"amount": BigInteger, "available_at": DateTime(timezone=True)}  # the others are strings

# Fixed SQL on asyncpg (driver_sql.py), one text for any number of rows (arrays unnested): a credit answer writes
# 400 rows, and through SQLAlchemy building and reading the statement cost billing more CPU than the rows did.
_ADD_HISTORY = (
    f"INSERT INTO transactions (occurred_at, {', '.join(HISTORY_COLUMNS)}) "
    "SELECT $1, * FROM unnest($2::varchar[], $3::varchar[], $4::varchar[], $5::text[], $6::bigint[], "
    "$7::varchar[], $8::varchar[], $9::varchar[], $10::varchar[], $11::timestamptz[]) "
    "ON CONFLICT DO NOTHING RETURNING transaction_id")


async def add_history(connection: AsyncConnection, rows: list[HistoryRow], occurred_at: datetime) -> set[str]:
    """Insert the rows not recorded yet, in the connection's transaction; returns the transaction ids that are new."""
    if not rows:
        return set()
    driver = await driver_sql.in_transaction(connection)
    recorded = await driver.fetch(_ADD_HISTORY, occurred_at,
                                  *([getattr(r, c) for r in rows] for c in HISTORY_COLUMNS))
    return {r[0] for r in recorded}
