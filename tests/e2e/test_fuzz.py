"""Fuzzing the command topics through real Kafka (issue 9, item 6).

Commands are generated from the committed JSON Schemas (hypothesis-jsonschema) and then mutated: wrong
types, huge numbers, odd unicode, missing and extra fields, hostile envelopes (over-long attributes, control
characters, `system` or malformed actors) and truncated JSON. Each goes to its command's topic (the admin topic
for an operator's command), one in four to any other command topic, with good commands (real fund sagas)
interleaved. Then:

* every command whose envelope parses ends with an outcome or a `CommandRejected` (its correlation id);
  every one whose envelope does not parse is on the dead-letter topic, and nothing else is;
* no handler exception escapes (nothing else dead-lettered, nothing retried: `message_failed` counts 0);
* a rejected command changes nothing: nothing but its `CommandRejected` carries its correlation id;
* the consumers never stop: a good command sent after the fuzz finishes;
* the good commands interleaved finish with the latency they have without the fuzz (printed; bounded).

`FUZZ_COMMANDS` sets how many (120 in the default suite; `make fuzz` sends 10,000). The latency is compared
with a control run: as many well-formed commands that are simply refused (`not_found`), with the same good
commands among them, so what is measured is the cost of a bad message against that of an ordinary one.
"""

import asyncio
import json
import os
import random
import statistics
import time
import uuid
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from platform_runtime.credentials import Credentials
from platform_schemas import Envelope, new_envelope
from platform_schemas.actors import ADMIN_TOPICS, COMMAND_ROUTES, INTEGRATOR_TOPICS, command_topic
from platform_schemas.commands.contracts import AcceptOffer
from platform_schemas.topics import CONTRACTS_COMMANDS, DEFAULT_PARTITIONS, dlq as dead_letter_topic

from tests.support.polling import eventually
from tests.support.story import offer, parties

COMMANDS = int(os.environ.get("FUZZ_COMMANDS", "120"))
# The suite's run keeps the per-test timeout; `make fuzz` (10,000: generating them alone takes minutes on a loaded
# machine) is bounded by the test's own deadlines instead.
pytestmark = [pytest.mark.e2e, pytest.mark.fuzz, pytest.mark.timeout(300 if COMMANDS <= 1000 else 0)]
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"
TYPES = sorted(COMMAND_ROUTES)
COMMAND_TOPICS = sorted(INTEGRATOR_TOPICS | ADMIN_TOPICS)
GOOD_EVERY = max(COMMANDS // 10, 10)  # one real fund saga among this many fuzzed commands
ODD_STRINGS = ["\x00", "a\x00b", "\ud800", "\u202eevil", "🙂" * 50, "e\u0301" * 30, "\uffff", "x" * 100_000, "",
               " ", "\n", "admin:", "system", "%00", "'; DROP TABLE contracts; --", "\\", '"']
HUGE_NUMBERS = [2**62, 2**63, 2**63 - 1, -(2**63), 10**30, -1, 0, 1e308, 10.0, True]


def data_for(type_name: str) -> st.SearchStrategy:
    return from_schema(json.loads((SCHEMAS / f"{type_name}.v1.json").read_text()))


def mutate(rng: random.Random, data: dict) -> dict:
    data = json.loads(json.dumps(data))
    keys = list(data)
    kind = rng.choice(["type", "huge", "unicode", "missing", "extra", "none"])
    if kind == "type" and keys:
        key = rng.choice(keys)
        data[key] = rng.choice([str(data[key]), 123, 10.0, [], {}, None, True, "1500"])
    elif kind == "huge":
        amount_keys = [k for k in keys if "amount" in k] or keys or ["amount"]
        data[rng.choice(amount_keys)] = rng.choice(HUGE_NUMBERS)
        for m in data.get("milestones", []) if isinstance(data.get("milestones"), list) else []:
            if isinstance(m, dict):
                m["amount"] = rng.choice(HUGE_NUMBERS)
    elif kind == "unicode" and keys:
        data[rng.choice(keys)] = rng.choice(ODD_STRINGS)
    elif kind == "missing" and keys:
        del data[rng.choice(keys)]
    elif kind == "extra":
        data[rng.choice(["zzz", "__proto__", "amount_", "actor"])] = rng.choice([1, "x", None, {"a": 1}])
    return data


def envelope_bytes(rng: random.Random, type_name: str, data: dict, actors: list[str]) -> tuple[str, bytes, bool]:
    """(command id, what is sent, whether its envelope parses)."""
    command_id = f"fz-{uuid.uuid4().hex}"
    subject = str(data.get("contract_id") or data.get("account_id") or f"s-{rng.randrange(1000)}")[:128] or "s"
    body = {"specversion": "1.0", "id": command_id, "source": "fuzz", "type": type_name,
            "time": "2026-12-02T01:00:00Z", "subject": subject, "actor": rng.choice(actors),
            "datacontenttype": "application/json", "dataschema": f"urn:escrow:schema:{type_name}:1", "data": data}
    roll = rng.random()
    if roll < 0.04:
        body[rng.choice(["correlationid", "type", "source", "subject"])] = "c" * rng.choice([129, 201, 5000])
    elif roll < 0.06:
        body["id"] = command_id + "\x00"
    elif roll < 0.08:
        body["dataschema"] = rng.choice(["urn:escrow:schema:SendOffer:99", "nonsense", "urn:x:1.5"])
    elif roll < 0.10:
        body["type"] = rng.choice(["NoSuchCommand", "OfferSent", "ChargeClient"])
    raw = json.dumps(body).encode()
    if roll > 0.96:
        raw = raw[: rng.randrange(1, len(raw))]  # truncated JSON
    try:
        parsed = Envelope.model_validate_json(raw)
        return parsed.id, raw, True
    except Exception:  # noqa: BLE001 - an envelope that does not parse: the consumer dead-letters it
        return command_id, raw, False


def generate(count: int, seed: int) -> list[tuple[str, dict]]:
    """`count` (type, data) pairs drawn from the committed schemas, about half of them mutated."""
    drawn: list[tuple[str, dict]] = []
    rng = random.Random(seed)

    @settings(max_examples=count, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(TYPES).flatmap(lambda t: st.tuples(st.just(t), data_for(t))))
    def draw(case):
        drawn.append(case)

    draw()
    while len(drawn) < count:  # hypothesis may stop early once it has explored enough; top up by mutation
        drawn.append(drawn[rng.randrange(len(drawn))])
    return [(t, mutate(rng, d) if rng.random() < 0.5 else d) for t, d in drawn[:count]]


async def _partitions(consumer: AIOKafkaConsumer, topics: list[str]) -> list:
    from aiokafka import TopicPartition

    # A consumer without a subscription keeps no per-topic metadata: every topic has DEFAULT_PARTITIONS.
    return [TopicPartition(t, p) for t in topics for p in range(DEFAULT_PARTITIONS)]


async def end_offsets(kafka: Credentials, topics: list[str]) -> dict:
    consumer = AIOKafkaConsumer(**kafka.kafka_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await _partitions(consumer, topics)
        consumer.assign(parts)
        return await consumer.end_offsets(parts)
    finally:
        await consumer.stop()


async def dead_lettered(kafka: Credentials, topics: list[str], since: dict) -> list:
    """The records put on these topics after `since` (their end offsets before the fuzz)."""
    consumer = AIOKafkaConsumer(**kafka.kafka_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await _partitions(consumer, topics)
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        for tp in parts:
            consumer.seek(tp, since.get(tp, 0))
        records, deadline = [], time.monotonic() + 30
        while time.monotonic() < deadline:
            behind = [tp for tp in parts if await consumer.position(tp) < ends[tp]]
            if not behind:
                break
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def failures_logged(service_ports: dict[str, int]) -> float:
    """messages retried or dead-lettered for a handler error, from the services' /metrics."""
    total = 0.0
    async with httpx.AsyncClient(timeout=10) as http:
        for port in service_ports.values():
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            for line in text.splitlines():
                if line.startswith("messages_dead_lettered_total{"):
                    total += float(line.rsplit(" ", 1)[1])
    return total


async def interleaved(client, people, messages: list[tuple[str, bytes]]) -> list[float]:
    """Publish the messages with a real fund saga every GOOD_EVERY of them; the sagas' latencies."""
    good: list[asyncio.Task] = []
    for n, (topic, raw) in enumerate(messages):
        await client.producer_for(topic).send(topic, raw, key=f"k-{n % 97}".encode())  # admin topics as admin
        if n % GOOD_EVERY == GOOD_EVERY // 2:
            good.append(asyncio.create_task(timed_offer(client, people)))
    await client.producer.flush()
    await client.admin_producer.flush()
    return list(await asyncio.gather(*good))


async def timed_offer(client, people) -> float:
    data = offer(people, amounts=(50_000,))
    started = time.monotonic()
    command = await client.send(data, subject=data.contract_id, actor=people.client_id)
    # A deadline, not the latency check (that compares medians below): a good saga waits behind all the commands
    # sent at once, in the control run too (10,000 took over 120 s at a load average of 25).
    outcome = await client.outcome(command, {"OfferSent", "OfferFundingFailed"}, timeout=120 + COMMANDS / 10)
    assert outcome.type == "OfferSent", outcome.data
    return time.monotonic() - started


async def test_fuzzed_commands_each_end_in_an_outcome_or_a_rejection_and_change_nothing_else(client, platform,
                                                                                          infra):
    people = await parties(client)
    others = await parties(client)
    actors = [people.client_id, people.freelancer_id, others.client_id, "admin:fuzz", "system", "nobody",
              "admin:", "client 1", "x" * 128]
    cases = await asyncio.to_thread(generate, COMMANDS, 20261202)
    rng = random.Random(9)
    dlq_topics = [dead_letter_topic(topic) for topic in COMMAND_TOPICS]
    dlq_before = await end_offsets(infra.credentials("admin"), dlq_topics)
    contracts_metrics = {"contracts": client.ports["contracts"], "billing": client.ports["billing"]}
    failures_before = await failures_logged(contracts_metrics)

    baseline = [await timed_offer(client, people) for _ in range(3)]
    control = await interleaved(client, people, [
        (CONTRACTS_COMMANDS, new_envelope(AcceptOffer(contract_id=f"none-{n}"), subject=f"none-{n}",
                                          actor=people.freelancer_id, source="fuzz").to_json())
        for n in range(len(cases))])

    parsed_ids: list[str] = []
    unparseable = 0
    messages = []
    for type_name, data in cases:
        command_id, raw, parses = envelope_bytes(rng, type_name, data, actors)
        topic = rng.choice(COMMAND_TOPICS) if rng.random() < 0.25 else command_topic(type_name)
        messages.append((topic, raw))
        if parses:
            parsed_ids.append(command_id)
        else:
            unparseable += 1
    started = time.monotonic()
    during_task = asyncio.create_task(interleaved(client, people, messages))

    # Every parsed command ends: an outcome or its CommandRejected, correlated by its id.
    by_correlation: dict[str, list] = {}
    seen = 0
    deadline = time.monotonic() + 120 + COMMANDS / 10
    pending = set(parsed_ids)
    while pending and time.monotonic() < deadline:
        for event in client.events[seen:]:
            by_correlation.setdefault(event.correlationid, []).append(event)
        seen = len(client.events)
        pending = {c for c in pending if c not in by_correlation}
        await asyncio.sleep(0.2)
    during = await during_task
    sent_in = time.monotonic() - started
    assert not pending, f"{len(pending)} of {len(parsed_ids)} commands without an outcome, e.g. {sorted(pending)[:5]}"

    # A rejected command changed nothing: its CommandRejected is the only message it caused.
    rejected = {c for c in parsed_ids if any(e.type == "CommandRejected" for e in by_correlation[c])}
    for command_id in rejected:
        assert [e.type for e in by_correlation[command_id]] == ["CommandRejected"], by_correlation[command_id]
    reasons: dict[str, int] = {}
    for command_id in rejected:
        reason = by_correlation[command_id][0].data["reason_code"]
        reasons[reason] = reasons.get(reason, 0) + 1

    # Only the unparseable envelopes were dead-lettered; no handler failed.
    # (An unparseable envelope behind the last parsed command of its partition may still be on its way there.)
    async def all_dead_lettered() -> list | None:  # the records in a list of one: none at all is an answer too
        dlq = await dead_lettered(infra.credentials("admin"), dlq_topics, dlq_before)
        counted = await failures_logged(contracts_metrics) - failures_before
        return [dlq] if len(dlq) >= unparseable and counted >= unparseable else None
    [dlq] = await eventually(all_dead_lettered, 60, f"{unparseable} envelopes dead-lettered and counted", every=0.5)
    errors = [dict(r.headers).get("dlq.error", b"").decode() for r in dlq]
    assert len(dlq) == unparseable and all(e.startswith("unparseable envelope") for e in errors), errors[:5]
    assert await failures_logged(contracts_metrics) - failures_before == unparseable

    # The consumers still run, and the good commands kept their latency.
    after = await timed_offer(client, people)
    print(f"\nfuzz: {len(cases)} commands sent in {sent_in:.1f}s ({len(parsed_ids)} parsed, {unparseable} "
          f"unparseable, {len(rejected)} rejected: {dict(sorted(reasons.items()))}); good fund sagas: alone "
          f"{[round(x, 2) for x in baseline]} s, among as many ordinary refused commands "
          f"{[round(x, 2) for x in control]} s, among the fuzz {[round(x, 2) for x in during]} s, after {after:.2f} s")
    assert statistics.median(during) <= 1.5 * statistics.median(control) + 2.0
