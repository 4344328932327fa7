"""An analytics consumer of the platform's event streams: a daily escrow / GMV summary in DuckDB.

    python examples/analytics/escrow_analytics.py --db escrow.duckdb [--credentials FILE] [--topic T ...]

It connects as the `analytics` principal, which may read the event topics and nothing else: FILE holds the
`key=value` lines of `deploy/local/credentials.sh analytics` (by default that script is run for the local
platform, KAFKA_BOOTSTRAP_SERVERS included).

It reads every event topic from the beginning to the end offsets it finds at start (no consumer group,
nothing committed: each run sees the whole history; run it again, or from cron, to catch up), keeps each
event once by its CloudEvents `id` (a message the platform published twice after a crash keeps its id),
joins a contract's events across topics (contracts' offer, escrow's ledger movements, billing's charges)
and writes three tables:

* `events`        one row per event id: type, source, topic, subject, contract, money columns, time, day;
* `contracts`     one row per contract: its people and currency (OfferSent), charged (billing), funded,
                  released, refunded and bonuses (escrow), what escrow still holds, its last event;
* `daily_summary` per UTC day and currency: GMV (money clients put into escrow for work, plus bonuses),
                  funded, released, refunded, bonuses, the net change of escrow, offers sent, contracts started.

Re-running is idempotent (`INSERT OR IGNORE` on the id; the two summaries are rebuilt from `events`).
Only the envelope is read, and events tolerate fields they do not know, so a newer producer breaks nothing.
"""

import argparse
import asyncio
import json
import os
from collections.abc import Iterable
from pathlib import Path

import duckdb
from aiokafka import AIOKafkaConsumer, TopicPartition
from platform_runtime.credentials import Credentials
from platform_schemas import Envelope, from_kafka
from pydantic import ValidationError

EVENT_TOPICS = ["contracts.events", "escrow.events", "billing.events", "notifications.events"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id VARCHAR PRIMARY KEY, type VARCHAR NOT NULL, source VARCHAR NOT NULL, topic VARCHAR NOT NULL,
    subject VARCHAR NOT NULL, contract_id VARCHAR, client_id VARCHAR, freelancer_id VARCHAR,
    amount BIGINT, currency VARCHAR, time TIMESTAMPTZ NOT NULL, day DATE NOT NULL, data JSON NOT NULL
);
"""

CONTRACTS = """
CREATE OR REPLACE TABLE contracts AS
WITH offers AS (
    SELECT contract_id, arg_min(client_id, time) AS client_id, arg_min(freelancer_id, time) AS freelancer_id,
           arg_min(currency, time) AS currency, min(time) AS offered_at
    FROM events WHERE type = 'OfferSent' GROUP BY contract_id
), money AS (
    SELECT contract_id,
           sum(amount) FILTER (WHERE type = 'ClientCharged') AS charged,
           sum(amount) FILTER (WHERE type = 'EscrowFunded') AS funded,
           sum(amount) FILTER (WHERE type = 'EscrowReleased') AS released,
           sum(amount) FILTER (WHERE type = 'EscrowRefunded') AS refunded,
           sum(amount) FILTER (WHERE type = 'BonusPosted') AS bonuses,
           arg_max(type, time) AS last_event, max(time) AS last_event_at, count(*) AS events
    FROM events WHERE contract_id IS NOT NULL GROUP BY contract_id
)
SELECT m.contract_id, o.client_id, o.freelancer_id, o.currency, o.offered_at,
       coalesce(m.charged, 0) AS charged, coalesce(m.funded, 0) AS funded, coalesce(m.released, 0) AS released,
       coalesce(m.refunded, 0) AS refunded, coalesce(m.bonuses, 0) AS bonuses,
       coalesce(m.funded, 0) - coalesce(m.released, 0) - coalesce(m.refunded, 0) AS held,
       m.last_event, m.last_event_at, m.events
FROM money m LEFT JOIN offers o USING (contract_id)
ORDER BY m.contract_id;
"""

# A contract's events without a currency of their own (ContractStarted, ...) count in the contract's currency.
DAILY = """
CREATE OR REPLACE TABLE daily_summary AS
WITH priced AS (
    SELECT e.day, e.type, e.amount, coalesce(e.currency, c.currency) AS currency
    FROM events e LEFT JOIN contracts c USING (contract_id)
)
SELECT day, currency,
       coalesce(sum(amount) FILTER (WHERE type IN ('EscrowFunded', 'BonusPosted')), 0) AS gmv,
       coalesce(sum(amount) FILTER (WHERE type = 'EscrowFunded'), 0) AS funded,
       coalesce(sum(amount) FILTER (WHERE type = 'EscrowReleased'), 0) AS released,
       coalesce(sum(amount) FILTER (WHERE type = 'EscrowRefunded'), 0) AS refunded,
       coalesce(sum(amount) FILTER (WHERE type = 'BonusPosted'), 0) AS bonuses,
       coalesce(sum(amount) FILTER (WHERE type = 'EscrowFunded'), 0)
         - coalesce(sum(amount) FILTER (WHERE type IN ('EscrowReleased', 'EscrowRefunded')), 0) AS escrow_net_change,
       count(*) FILTER (WHERE type = 'OfferSent') AS offers_sent,
       count(*) FILTER (WHERE type = 'ContractStarted') AS contracts_started
FROM priced WHERE currency IS NOT NULL
GROUP BY day, currency ORDER BY day, currency;
"""


def row_of(topic: str, envelope: Envelope) -> tuple:
    data = envelope.data
    amount = data.get("amount")
    return (envelope.id, envelope.type, envelope.source, topic, envelope.subject,
            data.get("contract_id"), data.get("client_id"), data.get("freelancer_id"),
            amount if isinstance(amount, int) and not isinstance(amount, bool) else None, data.get("currency"),
            envelope.time, envelope.time.date(), json.dumps(data))


async def read_all(kafka: Credentials, topics: Iterable[str]) -> list[tuple]:
    """Every event of these topics, from the beginning to the end offsets as of now, each id once."""
    consumer = AIOKafkaConsumer(**kafka.kafka_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - partitions of topics not yet seen
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        rows, seen = [], set()
        while remaining:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=500)).items():
                for record in records:
                    try:
                        envelope = from_kafka(record.value, record.headers)
                    except ValidationError:
                        continue  # not an event of the platform: nothing to count
                    if envelope.id not in seen:
                        seen.add(envelope.id)
                        rows.append(row_of(record.topic, envelope))
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return rows
    finally:
        await consumer.stop()


def store(db_path: str | Path, rows: list[tuple]) -> duckdb.DuckDBPyConnection:
    db = duckdb.connect(str(db_path))
    db.execute(SCHEMA)
    if rows:
        db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute(CONTRACTS)
    db.execute(DAILY)
    return db


async def run(kafka: Credentials, db_path: str | Path,
              topics: Iterable[str] = EVENT_TOPICS) -> duckdb.DuckDBPyConnection:
    return store(db_path, await read_all(kafka, list(topics)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="escrow-analytics.duckdb", help="DuckDB file to write")
    parser.add_argument("--credentials", type=Path, help="key=value lines of credentials.sh (default: run it "
                                                               "for `analytics` on the local platform)")
    parser.add_argument("--topic", action="append", help="event topic to read (repeatable); all four by default")
    args = parser.parse_args()
    kafka = Credentials.parse(args.credentials.read_text()) if args.credentials else Credentials.local("analytics")
    db = asyncio.run(run(kafka, args.db, args.topic or EVENT_TOPICS))
    print(db.sql("SELECT * FROM daily_summary ORDER BY day DESC, currency LIMIT 30"))


if __name__ == "__main__":
    main()
