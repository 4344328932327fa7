"""The analytics example (examples/analytics) on real Kafka: every event read from the beginning, each id once
(duplicates and an unreadable record included), a contract's events joined across topics, a daily escrow/GMV
summary in DuckDB, and a re-run that changes nothing."""

import importlib.util
import itertools
import uuid
from datetime import date, datetime, timezone

import pytest
from aiokafka import AIOKafkaProducer
from platform_schemas import Envelope

from tests.infra import ROOT
from tests.support.probe_service import create_topics

pytestmark = pytest.mark.integration


def load_example():
    spec = importlib.util.spec_from_file_location("escrow_analytics",
                                                  ROOT / "examples" / "analytics" / "escrow_analytics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_made = itertools.count()


def event(type_name: str, source: str, contract_id: str, day: int, **data) -> Envelope:
    """An event of that day; each one made a second after the one before."""
    return Envelope(id=str(uuid.uuid4()), source=source, type=type_name, subject=contract_id, actor="system",
                    time=datetime(2026, 5, day, 10, 30, next(_made) % 60, tzinfo=timezone.utc),
                    data={"contract_id": contract_id, **data})


async def test_daily_escrow_and_gmv_summary_from_every_event_once(infra, tmp_path):
    analytics = load_example()
    prefix = f"it-analytics-{uuid.uuid4().hex[:8]}"
    contracts, escrow, billing = (f"{prefix}-{name}.events" for name in ("contracts", "escrow", "billing"))
    await create_topics(infra.credentials("broker"), [contracts, escrow, billing], partitions=3)
    a, b = f"c-a-{prefix}", f"c-b-{prefix}"
    funded_a = event("EscrowFunded", "escrow", a, 1, amount=500, currency="USD", client_id="ann")
    published = [
        (contracts, event("OfferSent", "contracts", a, 1, currency="USD", client_id="ann", freelancer_id="bob")),
        (billing, event("ClientCharged", "billing", a, 1, amount=500, currency="USD", client_id="ann")),
        (escrow, funded_a),
        (escrow, funded_a),  # published again after a relay crash: same id
        (contracts, event("ContractStarted", "contracts", a, 1, client_id="ann", freelancer_id="bob",
                          currency="USD")),
        (escrow, event("EscrowReleased", "escrow", a, 2, amount=500, currency="USD", freelancer_id="bob")),
        (escrow, event("BonusPosted", "escrow", a, 2, amount=100, currency="USD", freelancer_id="bob")),
        (contracts, event("OfferSent", "contracts", b, 1, currency="EUR", client_id="cat", freelancer_id="dan")),
        (escrow, event("EscrowFunded", "escrow", b, 1, amount=300, currency="EUR")),
        (escrow, event("EscrowRefunded", "escrow", b, 2, amount=300, currency="EUR")),
    ]
    binary = event("EscrowFunded", "escrow", b, 2, amount=200, currency="EUR")
    producer = AIOKafkaProducer(**infra.credentials("broker").kafka_options())
    await producer.start()
    try:
        for topic, envelope in published:
            await producer.send_and_wait(topic, envelope.to_json(), key=envelope.subject.encode())
        await producer.send_and_wait(escrow, b"not an event", key=b.encode())
        attributes = binary.model_dump(mode="json", exclude_none=True)
        await producer.send_and_wait(escrow, b'{"contract_id": "%s", "amount": 200, "currency": "EUR"}' % b.encode(),
                                     key=b.encode(), headers=[(f"ce_{k}", str(v).encode())
                                                              for k, v in attributes.items() if k != "data"])
    finally:
        await producer.stop()

    db_path = tmp_path / "escrow.duckdb"
    db = await analytics.run(infra.credentials("broker"), db_path, [contracts, escrow, billing])
    assert db.execute("SELECT count(*) FROM events").fetchall()[0][0] == 10  # 12 records: one a duplicate, one junk

    summary = db.sql("SELECT day, currency, gmv, funded, released, refunded, bonuses, escrow_net_change, "
                     "offers_sent, contracts_started FROM daily_summary ORDER BY day, currency").fetchall()
    assert summary == [
        (date(2026, 5, 1), "EUR", 300, 300, 0, 0, 0, 300, 1, 0),
        (date(2026, 5, 1), "USD", 500, 500, 0, 0, 0, 500, 1, 1),
        (date(2026, 5, 2), "EUR", 200, 200, 0, 300, 0, -100, 0, 0),
        (date(2026, 5, 2), "USD", 100, 0, 500, 0, 100, -500, 0, 0),
    ]
    joined = db.sql("SELECT contract_id, client_id, freelancer_id, currency, charged, funded, released, refunded, "
                    "bonuses, held, last_event FROM contracts ORDER BY contract_id").fetchall()
    assert joined == [
        (a, "ann", "bob", "USD", 500, 500, 500, 0, 100, 0, "BonusPosted"),
        (b, "cat", "dan", "EUR", 0, 500, 0, 300, 0, 200, "EscrowFunded"),
    ]
    db.close()

    again = await analytics.run(infra.credentials("broker"), db_path, [contracts, escrow, billing])
    assert again.execute("SELECT count(*) FROM events").fetchall()[0][0] == 10
    assert again.execute("SELECT sum(gmv) FROM daily_summary").fetchall()[0][0] == 1100
    again.close()
