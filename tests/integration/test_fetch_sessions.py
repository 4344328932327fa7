"""Kafka fetch sessions (runtime/platform_runtime/fetch_sessions.py) against the real broker.

Each test reads topics of 12 partitions with aiokafka's consumer fetching within a session, and checks what a
consumer must never lose: every record, once, in order per partition; and that the fetches really were
incremental (the broker named a session, its epoch moved on, and a later request named only the partitions that
moved). The faults are the protocol's own: a wrong epoch, a session the broker does not know, partitions that stop
and start being fetched (records left unconsumed, an assignment changed).
"""

import contextlib
import time
import uuid
from collections import defaultdict

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer import consumer as aiokafka_consumer
from aiokafka.protocol.fetch import FetchRequest
from platform_runtime.fetch_sessions import (
    FetchSession, SessionFetcher, SessionFetchRequest, use_fetch_sessions,
)

from tests.support.polling import eventually
from tests.support.probe_service import create_topics

pytestmark = pytest.mark.integration
PARTITIONS = 12


@pytest_asyncio.fixture(loop_scope="session")
async def kafka(infra):
    return infra.credentials("broker")


@pytest_asyncio.fixture(loop_scope="session")
async def topics(kafka):
    names = [f"fetch-sessions-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    await create_topics(kafka, names, partitions=PARTITIONS)
    return names


@pytest_asyncio.fixture(loop_scope="session")
async def producer(kafka):
    producer = AIOKafkaProducer(**kafka.kafka_options(), linger_ms=0)
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
def with_sessions():
    assert use_fetch_sessions(True), "fetch sessions are written for the aiokafka this project pins"
    yield
    use_fetch_sessions(True)  # the runtime's default, whatever a test set


class Requests:
    """Every fetch request the consumer's fetcher sent within a session, and the error code of each answer; the
    next request can be spoiled on its way to the wire (`spoil_next`), as a confused client would send it."""

    def __init__(self, consumer: AIOKafkaConsumer):
        self.fetcher: SessionFetcher = consumer._fetcher
        assert isinstance(self.fetcher, SessionFetcher)
        self.sent: list[SessionFetchRequest] = []
        self.errors: list[int] = []
        self.spoil_next = None
        client = self.fetcher._client
        send = client.send

        async def recording(node_id, request, **options):
            if not isinstance(request, SessionFetchRequest):
                return await send(node_id, request, **options)
            if self.spoil_next and request.epoch != 0:
                self.spoil_next(request)
                self.spoil_next = None
            self.sent.append(request)
            response = await send(node_id, request, **options)
            self.errors.append(response.error_code)
            return response

        client.send = recording

    @property
    def session(self):
        [session] = self.fetcher.sessions.values()
        return session


async def consumer_of(kafka, *topics: str, **options) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(**kafka.kafka_options(), enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=200, **options)
    await consumer.start()
    consumer.assign([TopicPartition(t, p) for t in topics for p in range(PARTITIONS)])
    return consumer


async def send(producer, topic: str, partition: int, count: int, tag: str) -> list[bytes]:
    values = [f"{tag}-{topic}-{partition}-{i}".encode() for i in range(count)]
    for value in values:
        await producer.send(topic, value, partition=partition)
    await producer.flush()
    return values


async def read(consumer: AIOKafkaConsumer, expected: int, received: dict, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(map(len, received.values())) < expected:
        assert time.monotonic() < deadline, f"{sum(map(len, received.values()))} of {expected} records read"
        for tp, records in (await consumer.getmany(timeout_ms=200, max_records=7)).items():
            received[tp].extend(r.value for r in records)


async def test_every_record_comes_once_in_order_and_later_fetches_name_only_the_partitions_that_moved(
        kafka, topics, producer, with_sessions):
    consumer = await consumer_of(kafka, *topics)
    requests = Requests(consumer)
    try:
        expected: dict[TopicPartition, list[bytes]] = defaultdict(list)
        received: dict[TopicPartition, list[bytes]] = defaultdict(list)
        for round_ in range(6):  # a few partitions at a time, read before the next round is sent
            for topic, partition in [(topics[round_ % 3], round_), (topics[(round_ + 1) % 3], 11 - round_)]:
                expected[TopicPartition(topic, partition)] += await send(producer, topic, partition, 5, f"r{round_}")
            await read(consumer, sum(map(len, expected.values())), received)
        assert dict(received) == dict(expected)

        session = requests.session
        assert session.id != 0 and session.epoch > 3
        first, *later = requests.sent
        assert len(first.named) == 3 * PARTITIONS and first.epoch == 0
        # A later request names at most the partitions whose records were just read, never all 36.
        assert later and max(len(r.named) for r in later) <= 2
        assert all(r.session_id == session.id for r in later)
    finally:
        await consumer.stop()


async def test_a_wrong_epoch_or_an_unknown_session_is_answered_and_the_next_fetch_is_full_again(
        kafka, topics, producer, with_sessions):
    consumer = await consumer_of(kafka, topics[0])
    requests = Requests(consumer)
    try:
        received: dict[TopicPartition, list[bytes]] = defaultdict(list)
        expected = await send(producer, topics[0], 3, 4, "before")
        await read(consumer, 4, received)
        assert requests.session.id != 0

        def wrong_epoch(request):
            request.epoch += 5

        def unknown_session(request):
            request.session_id ^= 0x5A5A5A5A

        requests.spoil_next = wrong_epoch  # the broker answers INVALID_FETCH_SESSION_EPOCH (71)
        expected += await send(producer, topics[0], 3, 4, "wrong-epoch")
        await read(consumer, 8, received)
        requests.spoil_next = unknown_session  # the broker answers FETCH_SESSION_ID_NOT_FOUND (70)
        expected += await send(producer, topics[0], 3, 4, "unknown-id")
        await read(consumer, 12, received)

        assert received[TopicPartition(topics[0], 3)] == expected  # nothing lost, nothing twice
        assert 71 in requests.errors and 70 in requests.errors
        after_an_error = [requests.sent[i + 1] for i, error in enumerate(requests.errors[:-1]) if error]
        assert len(after_an_error) >= 2 and all(r.epoch == 0 and len(r.named) == PARTITIONS for r in after_an_error)
        assert requests.session.id != 0 and requests.session.epoch >= 1  # a session again after each
    finally:
        await consumer.stop()


async def test_partitions_that_stop_and_start_being_fetched_are_forgotten_and_named_again(
        kafka, topics, producer, with_sessions):
    """A partition left out of a fetch (paused, or holding records not yet consumed, or no longer assigned) is
    forgotten by the session, and named again with its position when it is fetched again."""
    topic = topics[1]
    consumer = await consumer_of(kafka, topic)
    requests = Requests(consumer)
    zero, five, six = (TopicPartition(topic, p) for p in (0, 5, 6))
    try:
        received: dict[TopicPartition, list[bytes]] = defaultdict(list)
        first = {zero: await send(producer, topic, 0, 4, "first"), five: await send(producer, topic, 5, 4, "first")}
        await read(consumer, 8, received)
        assert dict(received) == first

        consumer.pause(zero)
        await eventually(lambda: (topic, 0) not in requests.session.partitions, 10, "partition 0 forgotten", 0.02)
        assert any((topic, 0) in r.forgotten for r in requests.sent)
        received.clear()
        held = await send(producer, topic, 0, 3, "paused")
        moved = await send(producer, topic, 5, 3, "moved")
        await read(consumer, 3, received)
        assert dict(received) == {five: moved}

        consumer.resume(zero)
        received.clear()
        await read(consumer, 3, received)
        assert dict(received) == {zero: held}  # from its position: nothing of "first" again, nothing skipped
        assert any(r.named.get((topic, 0), (None,))[0] == 4 and r.epoch != 0 for r in requests.sent)

        # 0 and the idle others no longer ours. A new assignment starts from the reset position (no group here,
        # "earliest"): 5 is read again from its start, as aiokafka does without sessions.
        consumer.assign([five, six])
        received.clear()
        after = await send(producer, topic, 6, 3, "after")
        await send(producer, topic, 0, 3, "not-ours")
        await read(consumer, 10, received)
        assert dict(received) == {five: first[five] + moved, six: after}
        await eventually(lambda: requests.session.partitions.keys() == {(topic, 5), (topic, 6)}, 10,
                         "the session holds 5 and 6", 0.02)
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def broker_of(kafka, topic: str, partition: int):
    """An aiokafka client (a consumer's that fetches nothing) and the broker leading the partition: for requests
    sent by hand."""
    consumer = AIOKafkaConsumer(**kafka.kafka_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client._wait_on_metadata(topic)
        yield consumer._client, consumer._client.cluster.leader_for_partition(TopicPartition(topic, partition))
    finally:
        await consumer.stop()


async def test_the_broker_moves_a_partitions_offset_only_when_a_request_names_it(kafka, topics, producer):
    """What the session relies on, asked of the broker directly: records it answered come again while no request
    names the partition's offset anew. A fetcher that drops an answer unread (its assignment changed meanwhile)
    leaves its position, and so its session, where they were; if the broker had moved on by itself, those records
    would be skipped."""
    topic = topics[0]
    await send(producer, topic, 4, 5, "once")
    async with broker_of(kafka, topic, 4) as (client, node_id):
        session, answers = FetchSession(), []
        for _ in range(3):  # full, then twice within the session, never naming the partition again
            request = SessionFetchRequest(FetchRequest(100, 1, 1_048_576, 0, [(topic, [(4, 0, 1_048_576)])]), session)
            response = await client.send(node_id, request)
            assert response.error_code == 0
            session.answered(request.wanted, response)
            answers.append((request, {(t, p[0]): p[-1] for t, ps in response.topics for p in ps}))
    (first, full), *later = answers
    assert first.epoch == 0 and session.epoch == 3
    assert full[(topic, 4)]  # the five records
    for request, answer in later:
        assert request.named == {} and answer == full  # not named, and answered again from offset 0


async def test_a_consumer_that_stops_ends_its_session_on_the_broker(kafka, topics, producer, with_sessions):
    """So that sessions of stopped consumers (a watchdog restart, a deploy) do not fill the broker's session cache
    until it evicts them."""
    consumer = await consumer_of(kafka, topics[2])
    requests = Requests(consumer)
    received: dict[TopicPartition, list[bytes]] = defaultdict(list)
    await send(producer, topics[2], 1, 2, "before-stop")
    await read(consumer, 2, received)
    session_id = requests.session.id
    assert session_id != 0
    await consumer.stop()

    async with broker_of(kafka, topics[2], 1) as (client, node_id):
        for epoch in (1, 2, 3, 5, 8):  # whatever epoch the stopped consumer had reached: the session is gone
            request = SessionFetchRequest(FetchRequest(0, 0, 1024, 0, []), FetchSession(id=session_id, epoch=epoch))
            assert (await client.send(node_id, request)).error_code == 70  # FETCH_SESSION_ID_NOT_FOUND


async def test_off_the_consumer_fetches_as_aiokafka_does(kafka, topics, producer, with_sessions):
    use_fetch_sessions(False)
    assert aiokafka_consumer.Fetcher is not SessionFetcher
    consumer = await consumer_of(kafka, topics[2])
    try:
        expected = await send(producer, topics[2], 7, 3, "plain")
        received: dict[TopicPartition, list[bytes]] = defaultdict(list)
        await read(consumer, 3, received)
        assert received[TopicPartition(topics[2], 7)] == expected
        assert not isinstance(consumer._fetcher, SessionFetcher)
    finally:
        await consumer.stop()
