"""Earlier events on the broker, as a developer's machine has them after `make demo` or a benchmark.

`ensure_history` tops the topics notifications reads (contracts.events, billing.events) up to at least N
records of unrelated people and contracts, before the test platform starts: `make test` asks for 100,000
(TEST_HISTORY_EVENTS), so every end-to-end test shows that a broker with history changes nothing (the groups
begin at the log end, tests/support/groups.py). Records go out in whole batches per partition (aiokafka's
create_batch/send_batch): 100,000 take a few seconds.
"""

import asyncio
import uuid
from datetime import date

from aiokafka import AIOKafkaProducer

from platform_runtime.credentials import Credentials
from platform_schemas import new_envelope
from platform_schemas.events.billing import BonusPaid
from platform_schemas.events.contracts import AccountRegistered
from platform_schemas.topics import BILLING_EVENTS, CONTRACTS_EVENTS

from .groups import log_ends

TOPICS = [CONTRACTS_EVENTS, BILLING_EVENTS]  # what notifications reads
RECORDS_PER_SEND = 500


NUMBER = "N0N0N0"  # in a template's ids, replaced by each copy's number (ids stay unique)


def _templates(run: str) -> dict[str, str]:
    """One valid event per topic, as JSON, NUMBER in its ids."""
    person = f"acc-history-{run}-{NUMBER}"
    registered = new_envelope(
        AccountRegistered(account_id=person, role="client", name="Earlier Person", email=f"{person}@example.test"),
        subject=person, actor="system", source="history", id=f"history-{run}-{NUMBER}")
    paid = new_envelope(
        BonusPaid(business_date=date(2026, 1, 1), bonus_id=f"bonus-history-{run}-{NUMBER}",
                  contract_id=f"ctr-history-{run}-{NUMBER}", client_id=person, freelancer_id=f"{person}-f", amount=100,
                  currency="USD", charge_id=f"chg-history-{run}-{NUMBER}"),
        subject=f"ctr-history-{run}-{NUMBER}", actor="system", source="history", id=f"history-{run}-b{NUMBER}")
    return {CONTRACTS_EVENTS: registered.to_json().decode(), BILLING_EVENTS: paid.to_json().decode()}


async def history_size(kafka: Credentials) -> int:
    """Records on the topics (they are never compacted or expired during a test run)."""
    return sum((await log_ends(kafka, TOPICS)).values())


async def ensure_history(kafka: Credentials, at_least: int) -> int:
    """Adds unrelated events until the topics hold at least `at_least` records; returns how many they hold."""
    held = await history_size(kafka)
    if held >= at_least:
        return held
    templates = _templates(uuid.uuid4().hex[:8])
    producer = AIOKafkaProducer(**kafka.kafka_options(), acks="all", max_batch_size=1 << 20,
                                max_request_size=4 << 20)
    await producer.start()
    try:
        partitions = {t: sorted(await producer.partitions_for(t)) for t in TOPICS}
        slots = [(t, p) for t in TOPICS for p in partitions[t]]
        sends, n = [], 0
        while n < at_least - held:
            topic, partition = slots[(n // RECORDS_PER_SEND) % len(slots)]
            batch = producer.create_batch()
            for _ in range(min(RECORDS_PER_SEND, at_least - held - n)):
                value = templates[topic].replace(NUMBER, str(n)).encode()
                if batch.append(key=None, value=value, timestamp=None) is None:
                    break  # batch full: the rest goes in the next one
                n += 1
            batch.close()
            sends.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return await history_size(kafka)
