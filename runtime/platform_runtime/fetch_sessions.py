"""Incremental fetch sessions (Kafka's KIP-227) for aiokafka's consumer, which has none.

Why: aiokafka sends every fetch as a full fetch. Each request names every partition the consumer holds (12 per
topic, 48 to 60 for one of our services) and each response answers for every one of them, empty or not, both
encoded and decoded in pure Python. At a few messages a second every fetch brings one record, so that cost is
paid per record: about 0.3 ms of the consumer's CPU and 0.1 ms of the broker's per fetch for 48 idle partitions,
measured on this machine (README, issue 10). With a session the broker remembers the partitions and their fetch
offsets: a request names only the partitions whose offset moved since the one before, and the answer only the
partitions that have something new.

The protocol, as the Java consumer's `FetchSessionHandler` keeps it:
- epoch 0 is a full request. With session id 0 it asks for a session; with ours it closes ours and asks anew.
- The answer names the session. Each later request carries its id and the next epoch, the partitions added or
  moved (the only ones it names), and the partitions it no longer fetches ("forgotten": unassigned, or holding
  records not yet consumed, which aiokafka leaves out of a fetch).
- The broker moves its copy of a partition's offset only when a request names it, never by what it answered:
  a partition whose records were fetched is named again with its new position.
- A session error, a lost answer or a cancelled request: the next request is full again.
- A consumer that stops ends its sessions (epoch -1), so they do not hold the broker's session cache.

What the broker holds is only ever taken as answered: `FetchSession.partitions` changes when a response comes,
so a request built but never sent (its task cancelled before it ran) leaves both sides as they were.

Installed by `use_fetch_sessions()` into aiokafka's consumer module, for the aiokafka version it was written
against only (it overrides two methods of aiokafka's private `Fetcher`). Setting `KAFKA_FETCH_SESSIONS=false`
keeps aiokafka's full fetches.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiokafka
from aiokafka.consumer import consumer as aiokafka_consumer
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.errors import KafkaError
from aiokafka.protocol.fetch import FetchRequest

from .logging import get_logger

log = get_logger(__name__)

WRITTEN_FOR = "0.14.0"  # the aiokafka whose Fetcher and FetchRequest this module extends
FULL = 0  # the epoch of a full request (the protocol's INITIAL_EPOCH)
CLOSE = -1  # the epoch that ends a session (the protocol's FINAL_EPOCH)
CLOSE_WAIT = 1.0  # seconds a stopping consumer waits for a broker to end its session
LAST_EPOCH = 2**31 - 1  # an epoch wraps to 1 after this
SESSION_ID_NOT_FOUND = 70  # the broker has no such session: ask for a new one (session id 0)
# Any other error of the request as a whole (71, INVALID_FETCH_SESSION_EPOCH, among them): close ours, ask anew.

Partitions = dict[tuple[str, int], tuple[int, int]]  # (topic, partition) -> (fetch offset, max bytes)


@dataclass
class FetchSession:
    """One consumer's session with one broker: what the broker holds, as last answered."""

    id: int = 0
    epoch: int = FULL
    partitions: Partitions = field(default_factory=dict)

    def changes(self, wanted: Partitions) -> tuple[Partitions, list[tuple[str, int]]]:
        """The partitions a request names (added or moved) and those it forgets, to fetch `wanted`."""
        if self.epoch == FULL:
            return dict(wanted), []
        named = {tp: fetch for tp, fetch in wanted.items() if self.partitions.get(tp) != fetch}
        return named, [tp for tp in self.partitions if tp not in wanted]

    def answered(self, wanted: Partitions, response) -> None:
        """The broker answered the request that fetched `wanted`."""
        error = getattr(response, "error_code", None)  # None: a version without sessions (below 7)
        if error == 0 and response.session_id != 0:
            self.id, self.partitions = response.session_id, wanted
            self.epoch = 1 if self.epoch == LAST_EPOCH else self.epoch + 1
        elif error in (None, 0, SESSION_ID_NOT_FOUND):  # no sessions, none made (the broker's cache is full), or
            self.id, self.epoch, self.partitions = 0, FULL, {}  # ours is gone: the next request asks anew
        else:  # INVALID_FETCH_SESSION_EPOCH and the like: answered with session id 0, but ours is still to close
            self.lost()

    def lost(self) -> None:
        """No answer to rely on: the next request is full, and replaces this session on the broker."""
        self.epoch, self.partitions = FULL, {}

    def closing(self) -> FetchSession:
        """The session as the request that ends it sees it: its id, the closing epoch, no partitions."""
        return FetchSession(id=self.id, epoch=CLOSE)


class SessionFetchRequest(FetchRequest):
    """A fetch within a session. `topics` stays the full fetch it stands for (aiokafka's fetcher reads each
    partition's fetch offset from it); `build` names only the partitions the session's changes name."""

    def __init__(self, full: FetchRequest, session: FetchSession):
        super().__init__(full._max_wait_ms, full._min_bytes, full._max_bytes, full._isolation_level, full.topics,
                         rack_id=full._rack_id)
        self.session = session
        self.wanted: Partitions = {(topic, partition): (offset, max_bytes)
                                   for topic, partitions in full.topics for partition, offset, max_bytes in partitions}
        self.session_id, self.epoch = session.id, session.epoch
        self.named, self.forgotten = session.changes(self.wanted)

    def build(self, request_struct_class):
        if request_struct_class.API_VERSION < 7:  # no sessions in this version: the full fetch
            return super().build(request_struct_class)
        with_leader_epoch = request_struct_class.API_VERSION >= 9
        topics: dict[str, list[tuple]] = {}
        for (topic, partition), (offset, max_bytes) in self.named.items():
            topics.setdefault(topic, []).append(
                (partition, -1, offset, -1, max_bytes) if with_leader_epoch else (partition, offset, -1, max_bytes))
        forgotten: dict[str, list[int]] = {}
        for topic, partition in self.forgotten:
            forgotten.setdefault(topic, []).append(partition)
        fields = [-1, self._max_wait_ms, self._min_bytes, self._max_bytes, self._isolation_level,
                  self.session_id, self.epoch, list(topics.items()), list(forgotten.items())]
        if request_struct_class.API_VERSION >= 11:
            fields.append(self._rack_id)
        return request_struct_class(*fields)


class _SessionsClient:
    """aiokafka's client as the fetcher sees it: a fetch within a session updates its session by the answer."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    async def send(self, node_id, request, **options):
        if not isinstance(request, SessionFetchRequest):
            return await self._client.send(node_id, request, **options)
        try:
            response = await self._client.send(node_id, request, **options)
        except BaseException:  # an error, or cancelled: whether the broker took the request is unknown
            request.session.lost()
            raise
        answered = {(topic, partition[0]) for topic, partitions in response.topics for partition in partitions}
        if not answered <= request.wanted.keys():  # aiokafka's fetcher would fail on a partition it did not ask for
            log.warning("kafka_fetch_session_answered_unasked", partitions=sorted(answered - request.wanted.keys()))
            request.session.lost()
            response.topics = []
            return response
        request.session.answered(request.wanted, response)
        return response


class SessionFetcher(Fetcher):
    """aiokafka's fetcher, fetching within one session per broker."""

    def __init__(self, client, subscriptions, **options):
        self.sessions: dict[int, FetchSession] = {}
        super().__init__(_SessionsClient(client), subscriptions, **options)

    async def close(self):
        """Stop fetching, then end each session on its broker, as the Java consumer does, so that it does not keep
        a slot of the broker's session cache until evicted. Best effort: a broker that does not answer within
        CLOSE_WAIT evicts the session in its own time."""
        await super().close()
        for node_id, session in self.sessions.items():
            if session.id == 0:
                continue
            request = SessionFetchRequest(FetchRequest(0, 0, 0, self._isolation_level, []), session.closing())
            try:
                await asyncio.wait_for(self._client.send(node_id, request), CLOSE_WAIT)
            except (asyncio.TimeoutError, KafkaError, OSError) as error:
                log.info("kafka_fetch_session_not_closed", node_id=node_id, error=repr(error))

    def _get_actions_per_node(self, assignment):
        requests, *rest = super()._get_actions_per_node(assignment)
        in_sessions = [(node_id, SessionFetchRequest(request, self.sessions.setdefault(node_id, FetchSession())))
                       for node_id, request in requests]
        return (in_sessions, *rest)


def use_fetch_sessions(enabled: bool = True) -> bool:
    """Every aiokafka consumer this process starts from now on fetches within sessions (or, `enabled=False`, with
    aiokafka's own full fetches). Answers whether sessions are in use."""
    if not enabled:
        aiokafka_consumer.Fetcher = Fetcher
        return False
    if aiokafka.__version__ != WRITTEN_FOR:
        log.warning("kafka_fetch_sessions_not_used", written_for=WRITTEN_FOR, aiokafka=aiokafka.__version__)
        return False
    aiokafka_consumer.Fetcher = SessionFetcher
    return True
