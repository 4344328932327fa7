"""Fund sagas under load: SendOffer commands in, OfferSent out, matched by correlation id.

Three kinds of load:
- latency: an open-loop offered load (commands sent on a fixed schedule whatever the platform
  does, so a slow platform cannot slow the load down and hide its own latency); the latency of
  a saga is from the time its SendOffer was *scheduled* to be sent to the arrival of its OfferSent
  at this consumer, so a load generator that falls behind its schedule (the machine is busy) adds
  its lateness to the figures instead of hiding it (no coordinated omission);
- burst: N offers sent at once, sagas per second from the first send to the last OfferSent;
- throughput: a saturating closed loop that keeps `in_flight` sagas open for `duration` seconds
  and counts OfferSent per second; at the end it reports what is still open and waits until all
  of it completes.
Every phase reports its stalls (sagas slower than stats.STALL_SECONDS), warm-up included.
"""

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from platform_schemas import new_envelope
from platform_schemas.actors import ADMIN_TOPICS
from platform_schemas.commands.billing import AddBillingMethod
from platform_schemas.commands.contracts import MilestoneSpec, RegisterAccount, SendOffer
from platform_schemas.topics import (
    BILLING_COMMANDS, BILLING_EVENTS, BILLING_SAGA_COMMANDS, CONTRACTS_ADMIN_COMMANDS, CONTRACTS_COMMANDS,
    CONTRACTS_EVENTS, ESCROW_EVENTS, TOPICS,
)

from .principals import as_, super_user
from .stats import stalls, summary_ms, tail

OUTCOMES = ("OfferSent", "OfferFundingFailed", "CommandRejected", "AccountRegistered", "BillingMethodAdded")
# A cheap test on the raw bytes first: most events on these topics are not outcomes we wait for.
_MARKERS = tuple(f'"{t}"'.encode() for t in OUTCOMES)
SOURCE = "bench"


@dataclass
class Outcome:
    type: str
    sent_at: float
    arrived_at: float

    @property
    def seconds(self) -> float:
        return self.arrived_at - self.sent_at


@dataclass
class Tracker:
    """Publishes commands and records, by correlation id, when each one's outcome event arrives."""

    bootstrap: str
    linger_ms: int = 2
    sent: dict[str, float] = field(default_factory=dict)
    sent_wall: dict[str, float] = field(default_factory=dict)  # time.time(), to compare with Kafka timestamps
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    listeners: list = field(default_factory=list)

    async def start(self) -> None:
        # integrator for the public command topics, admin for the operators' (the parties' registrations)
        self.producer, self.admin_producer = (
            AIOKafkaProducer(**as_(self.bootstrap, name).kafka_options(), enable_idempotence=True, acks="all",
                             linger_ms=self.linger_ms) for name in ("integrator", "admin"))
        await self.producer.start()
        await self.admin_producer.start()
        self.consumer = AIOKafkaConsumer(**as_(self.bootstrap, "integrator").kafka_options(), enable_auto_commit=False,
                                         fetch_max_wait_ms=100)
        await self.consumer.start()
        # Topics are created by the project's scripts with these partition counts (auto-creation is off).
        counts = {t.name: t.partitions for t in TOPICS}
        partitions = [TopicPartition(t, p) for t in (CONTRACTS_EVENTS, BILLING_EVENTS) for p in range(counts[t])]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the positions now, before any command is sent
            await self.consumer.position(tp)
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if reader := getattr(self, "_reader", None):
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        for client in (getattr(self, "consumer", None), getattr(self, "producer", None),
                       getattr(self, "admin_producer", None)):
            if client is not None:
                await client.stop()

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=500)
            arrived = time.perf_counter()
            for records in batch.values():
                for record in records:
                    if any(m in record.value for m in _MARKERS):
                        self._note(json.loads(record.value), arrived)

    def _note(self, event: dict, arrived: float) -> None:
        command_id = event.get("correlationid")
        if event["type"] not in OUTCOMES or command_id not in self.sent or command_id in self.outcomes:
            return
        if event["type"] == "CommandRejected" and event["data"].get("command_id") != command_id:
            return
        outcome = self.outcomes[command_id] = Outcome(event["type"], self.sent[command_id], arrived)
        for listener in self.listeners:
            listener(command_id, outcome)

    async def publish(self, topic: str, data, *, subject: str, actor: str, scheduled: float | None = None) -> str:
        """`scheduled`: the perf_counter time this command was due; its latency counts from then."""
        envelope = new_envelope(data, subject=subject, actor=actor, source=SOURCE)
        value = envelope.to_json()
        now, wall = time.perf_counter(), time.time()
        due = now if scheduled is None else min(scheduled, now)
        self.sent[envelope.id], self.sent_wall[envelope.id] = due, wall - (now - due)
        producer = self.admin_producer if topic in ADMIN_TOPICS else self.producer
        await producer.send(topic, value, key=subject.encode())  # enqueued; acked in the background
        return envelope.id

    def open(self) -> int:
        return len(self.sent) - len(self.outcomes)

    async def wait_all(self, ids: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while any(i not in self.outcomes for i in ids):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True


# A fund saga's messages in order, and the service whose work lies between one and the next: its
# consumer's fetch and batch, its database commit, its relay's pick-up and publish.
# Escrow holds on billing's ClientCharged itself: contracts' HoldEscrow is sent only after the hold's deadline.
HOPS = ("SendOffer", "ChargeClient", "ClientCharged", "EscrowFunded", "OfferSent")
HOP_OWNERS = ("contracts", "billing", "escrow", "contracts")


@dataclass
class HopTracer:
    """When each saga message was published (its Kafka timestamp, set by the producing relay)."""

    bootstrap: str
    tracker: Tracker
    published: dict[str, dict[str, float]] = field(default_factory=dict)

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(**super_user(self.bootstrap).kafka_options(), enable_auto_commit=False,
                                         fetch_max_wait_ms=100)  # saga command topics: no principal reads them all
        await self.consumer.start()
        counts = {t.name: t.partitions for t in TOPICS}
        topics = (BILLING_SAGA_COMMANDS, BILLING_EVENTS, ESCROW_EVENTS, CONTRACTS_EVENTS)
        partitions = [TopicPartition(t, p) for t in topics for p in range(counts[t])]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self.consumer.position(tp)
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.consumer.stop()

    async def _read(self) -> None:
        markers = tuple(f'"{t}"'.encode() for t in HOPS[1:])
        while True:
            for records in (await self.consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if any(m in record.value for m in markers):
                        event = json.loads(record.value)
                        if event["type"] in HOPS and event.get("correlationid") in self.tracker.sent:
                            # The first publication: a step re-sent after its deadline is published again later.
                            self.published.setdefault(event["correlationid"], {}).setdefault(
                                event["type"], record.timestamp / 1000)

    def breakdown(self, ids: list[str]) -> dict[str, dict]:
        """Per hop, how long from one message's publication to the next one's; then the last delivery."""
        spans: dict[str, list[float]] = {}
        for command_id in ids:
            times = {"SendOffer": self.tracker.sent_wall[command_id], **self.published.get(command_id, {})}
            outcome = self.tracker.outcomes.get(command_id)
            if outcome is None or outcome.type != "OfferSent" or any(h not in times for h in HOPS):
                continue
            for owner, before, after in zip(HOP_OWNERS, HOPS, HOPS[1:]):
                spans.setdefault(f"{owner}: {before} -> {after} published", []).append(times[after] - times[before])
            arrived = times["SendOffer"] + outcome.seconds
            spans.setdefault("delivery: OfferSent published -> read by the caller", []).append(
                arrived - times["OfferSent"])
        return {stage: summary_ms(values) for stage, values in spans.items()}


@dataclass
class Parties:
    clients: list[str]
    freelancers: list[str]
    next: int = 0

    def pick(self) -> tuple[str, str]:
        self.next += 1
        i = self.next % len(self.clients)
        return self.clients[i], self.freelancers[i]


async def register_parties(tracker: Tracker, pairs: int, timeout: float = 120) -> Parties:
    """Clients with a succeeding card and freelancers, registered and confirmed before any offer."""
    run = uuid.uuid4().hex[:8]
    clients = [f"bench-client-{run}-{i}" for i in range(pairs)]
    freelancers = [f"bench-freelancer-{run}-{i}" for i in range(pairs)]
    ids = []
    for role, accounts in (("client", clients), ("freelancer", freelancers)):
        for account_id in accounts:
            ids.append(await tracker.publish(CONTRACTS_ADMIN_COMMANDS, RegisterAccount(
                account_id=account_id, role=role, name=account_id, email=f"{account_id}@example.test"),
                subject=account_id, actor="admin:bench"))
    for client_id in clients:
        ids.append(await tracker.publish(BILLING_COMMANDS, AddBillingMethod(
            account_id=client_id, billing_method_id=f"card-{client_id}", kind="card", token="tok_visa",
            make_primary=True), subject=client_id, actor=client_id))
    if not await tracker.wait_all(ids, timeout):
        raise TimeoutError(f"{sum(i not in tracker.outcomes for i in ids)} of {len(ids)} set-up commands unanswered")
    bad = Counter(tracker.outcomes[i].type for i in ids if tracker.outcomes[i].type == "CommandRejected")
    if bad:
        raise RuntimeError(f"set-up commands rejected: {dict(bad)}")
    return Parties(clients, freelancers)


async def send_offer(tracker: Tracker, parties: Parties, scheduled: float | None = None) -> str:
    client_id, freelancer_id = parties.pick()
    contract_id = f"bench-{uuid.uuid4().hex[:16]}"
    offer = SendOffer(
        contract_id=contract_id, client_id=client_id, freelancer_id=freelancer_id, title="Benchmark offer",
        currency="USD", deposit="first_milestone",
        milestones=[MilestoneSpec(milestone_id=f"{contract_id}-m{i}", title=f"Milestone {i}", amount=amount)
                    for i, amount in enumerate((50_000, 70_000))])
    return await tracker.publish(CONTRACTS_COMMANDS, offer, subject=contract_id, actor=client_id, scheduled=scheduled)


def _types(tracker: Tracker, ids: list[str]) -> dict[str, int]:
    counts = Counter(tracker.outcomes[i].type if i in tracker.outcomes else "none_yet" for i in ids)
    return dict(counts)


async def offered_load(tracker: Tracker, parties: Parties, rate: float, seconds: float,
                       drain_timeout: float = 180, trace_hops: bool = False) -> dict:
    """Open loop: one SendOffer every 1/rate seconds; latency scheduled send -> OfferSent of each."""
    count = int(rate * seconds)
    ids: list[str] = []
    tracer = HopTracer(tracker.bootstrap, tracker) if trace_hops else None
    if tracer:
        await tracer.start()
    try:
        started, started_unix = time.perf_counter(), time.time()
        worst_lag = 0.0
        for i in range(count):
            due = started + i / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            worst_lag = max(worst_lag, time.perf_counter() - due)
            ids.append(await send_offer(tracker, parties, scheduled=due))
        sending = time.perf_counter() - started
        completed = await tracker.wait_all(ids, drain_timeout)
        await asyncio.sleep(0.5 if tracer else 0)  # the tracer reads the same events a moment later
    finally:
        if tracer:
            await tracer.stop()
    # (seconds after the phase began it was scheduled, latency) of each saga that ended in OfferSent
    sent_ok = [(tracker.sent[i] - started, tracker.outcomes[i].seconds) for i in ids
               if i in tracker.outcomes and tracker.outcomes[i].type == "OfferSent"]
    result = {"offered_rate_per_second": rate, "seconds": round(sending, 2), "offers": count,
              "all_completed": completed, "outcomes": _types(tracker, ids),
              "latency_from": "scheduled send time", "worst_send_lag_ms": round(worst_lag * 1000, 2),
              "latency_ms": summary_ms([latency for _at, latency in sent_ok]), "stalls": _stalls(tracker, ids, started),
              "tail": tail(sent_ok, started_unix)}
    if tracer:
        result["hops_ms"] = tracer.breakdown(ids)
    return result


def _stalls(tracker: Tracker, ids: list[str], started: float) -> dict:
    """Sagas of this phase slower than the stall threshold (or never finished: counted as infinitely slow)."""
    return stalls([(tracker.sent[i] - started,
                    tracker.outcomes[i].seconds if i in tracker.outcomes else float("inf")) for i in ids])


async def burst_load(tracker: Tracker, parties: Parties, count: int, drain_timeout: float = 600) -> dict:
    """`count` offers sent at once (as fast as the producer takes them): sagas per second from the
    first send to the last OfferSent, the completions per second, and each saga's time since the burst began."""
    started = time.perf_counter()
    ids = [await send_offer(tracker, parties, scheduled=started) for _ in range(count)]
    sending = time.perf_counter() - started
    completed = await tracker.wait_all(ids, drain_timeout)
    done = [tracker.outcomes[i] for i in ids if i in tracker.outcomes and tracker.outcomes[i].type == "OfferSent"]
    last = max((o.arrived_at for o in done), default=started)
    per_second = Counter(int(o.arrived_at - started) for o in done)
    return {"burst": count, "send_seconds": round(sending, 2), "all_completed": completed,
            "outcomes": _types(tracker, ids), "seconds_to_last_offer_sent": round(last - started, 2),
            "sagas_per_second": round(len(done) / max(last - started, 1e-9), 1),
            "offer_sent_per_second": [per_second.get(s, 0) for s in range(int(last - started) + 1)],
            "latency_ms": summary_ms([o.seconds for o in done])}


async def saturating_load(tracker: Tracker, parties: Parties, in_flight: int, seconds: float, warmup: float,
                          drain_timeout: float = 180) -> dict:
    """Closed loop: `in_flight` sagas open at all times for `seconds`; OfferSent counted per second."""
    slots = asyncio.Semaphore(in_flight)
    ids: list[str] = []
    mine: set[str] = set()
    per_second: Counter[int] = Counter()
    started = time.perf_counter()

    def on_outcome(command_id: str, outcome: Outcome) -> None:
        if command_id in mine:
            slots.release()
            if outcome.type == "OfferSent":
                per_second[int(outcome.arrived_at - started)] += 1

    tracker.listeners.append(on_outcome)
    try:
        while (now := time.perf_counter()) - started < seconds:
            try:
                await asyncio.wait_for(slots.acquire(), started + seconds - now)
            except TimeoutError:
                break
            command_id = await send_offer(tracker, parties)
            mine.add(command_id)
            ids.append(command_id)
        ended = time.perf_counter()
        still_open = sum(i not in tracker.outcomes for i in ids)
        completed = await tracker.wait_all(ids, drain_timeout)
        drained = time.perf_counter() - ended
    finally:
        tracker.listeners.remove(on_outcome)
    window = range(int(warmup), int(seconds))
    steady = [per_second.get(s, 0) for s in window]
    sent_ok = [tracker.outcomes[i].seconds for i in ids if i in tracker.outcomes and tracker.outcomes[i].type == "OfferSent"]
    return {
        "in_flight_target": in_flight, "seconds": seconds, "steady_window_s": [int(warmup), int(seconds)],
        "sagas_per_second_steady": round(sum(steady) / max(len(steady), 1), 1),
        "sagas_per_second_min_max": [min(steady, default=0), max(steady, default=0)],
        "offer_sent_per_second": [per_second.get(s, 0) for s in range(int(seconds))],
        "offers_sent": len(ids), "open_at_end": still_open, "all_completed": completed,
        "drain_seconds": round(drained, 2), "outcomes": _types(tracker, ids),
        "latency_under_saturation_ms": summary_ms(sent_ok), "stalls": _stalls(tracker, ids, started),
        "seconds_without_completion": sum(1 for n in steady if n == 0),
    }
