"""The runtime's own statements on the hot path (inbox, outbox, timers), run on asyncpg directly.

Every message handled runs them, so they are the statements that run most. Through SQLAlchemy Core each one
cost more CPU in statement objects, cache keys and result processing than PostgreSQL took to run it; as fixed
SQL text on the transaction's own asyncpg connection they are prepared once per connection and cost a bind
and an execute. They run inside the unit of work's transaction (and its savepoints): `in_transaction` starts
the transaction first if SQLAlchemy has not sent its BEGIN yet (its asyncpg adapter begins lazily).

The table names are the runtime's (platform_runtime/tables.py), the same in every service's database.
"""

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection


async def in_transaction(connection: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under `connection`, its transaction begun.

    Relies on SQLAlchemy's asyncpg adapter (`_execute_mutex`, `_transaction`, `_start_transaction`, pinned in
    uv.lock); tests/integration/test_outbox_inbox.py checks that what runs here commits and rolls back with
    the unit of work.
    """
    adapted = (await connection.get_raw_connection()).dbapi_connection
    async with adapted._execute_mutex:
        if adapted._transaction is None:
            await adapted._start_transaction()
    return adapted._connection


# One round trip for both answers: `claimed` is the id when the row is new; `seen` is the fingerprint of the
# row that was there before (the SELECT sees the statement's snapshot, not the CTE's insert).
CLAIM = """
WITH claimed AS (
    INSERT INTO processed_messages (message_id, type, subject, actor, fingerprint, status, processed_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING message_id)
SELECT (SELECT message_id FROM claimed) AS claimed,
       (SELECT fingerprint FROM processed_messages WHERE message_id = $1) AS seen
"""

SET_STATUS = "UPDATE processed_messages SET status = $2, outcome = $3::jsonb WHERE message_id = $1"

# The outbox rows of a transaction and the relay's wake-up in one statement. A data-modifying CTE runs to
# completion whether or not the query reads it; WITH ORDINALITY keeps the rows' order in `seq` (commit order
# per subject is what the relay publishes by).
WRITE_OUTBOX = """
WITH written AS (
    INSERT INTO outbox (event_id, topic, key, type, payload)
    SELECT event_id, topic, key, type, payload
    FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::bytea[])
         WITH ORDINALITY AS r(event_id, topic, key, type, payload, n)
    ORDER BY n
    RETURNING 1)
SELECT pg_notify($6, '')
"""

SCHEDULE = """
INSERT INTO timers (timer_id, kind, subject, due_at, payload, correlation_id)
VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT DO NOTHING
"""

# A timer locked by a runner is firing right now: skipped (see UnitOfWork.cancel_timers).
CANCEL_TIMERS = """
UPDATE timers SET cancelled_at = $3 WHERE timer_id IN (
    SELECT timer_id FROM timers
    WHERE subject = $1 AND kind = ANY($2::varchar[]) AND fired_at IS NULL AND cancelled_at IS NULL
    FOR UPDATE SKIP LOCKED)
"""
