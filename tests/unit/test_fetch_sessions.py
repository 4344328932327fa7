"""A Kafka fetch session's bookkeeping (runtime/platform_runtime/fetch_sessions.py), without a broker.

The broker side is in tests/integration/test_fetch_sessions.py; here: what a request names and forgets, how each
kind of answer moves the session, and what goes on the wire for each protocol version.
"""

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka.protocol.fetch import FetchRequest, FetchRequest_v6, FetchRequest_v7, FetchRequest_v9, FetchRequest_v11
from platform_runtime.fetch_sessions import (
    CLOSE, FULL, LAST_EPOCH, FetchSession, SessionFetchRequest, _SessionsClient,
)

A0, A1, B0 = ("a", 0), ("a", 1), ("b", 0)


def answer(error_code=0, session_id=7, topics=()):
    return SimpleNamespace(error_code=error_code, session_id=session_id, topics=list(topics))


def full_fetch(wanted: dict) -> FetchRequest:
    topics: dict[str, list] = {}
    for (topic, partition), (offset, max_bytes) in wanted.items():
        topics.setdefault(topic, []).append((partition, offset, max_bytes))
    return FetchRequest(500, 1, 50_000, 0, list(topics.items()), rack_id="r1")


def test_a_new_session_names_every_partition_and_forgets_none():
    assert FetchSession().changes({A0: (5, 100), B0: (0, 100)}) == ({A0: (5, 100), B0: (0, 100)}, [])


@pytest.mark.parametrize("held, wanted, named, forgotten", [
    ({A0: (5, 100), A1: (0, 100)}, {A0: (5, 100), A1: (0, 100)}, {}, []),                 # nothing moved
    ({A0: (5, 100), A1: (0, 100)}, {A0: (9, 100), A1: (0, 100)}, {A0: (9, 100)}, []),     # records read on a0
    ({A0: (5, 100)}, {A0: (5, 100), B0: (3, 100)}, {B0: (3, 100)}, []),                   # b0 fetched again
    ({A0: (5, 100), A1: (0, 100)}, {A1: (0, 100)}, {}, [A0]),                             # a0 paused / buffered
    ({A0: (5, 100)}, {A0: (5, 200)}, {A0: (5, 200)}, []),                                 # its size changed
])
def test_a_request_in_a_session_names_what_moved_and_forgets_what_it_no_longer_fetches(held, wanted, named,
                                                                                        forgotten):
    session = FetchSession(id=7, epoch=3, partitions=held)
    assert session.changes(wanted) == (named, forgotten)


@pytest.mark.parametrize("before, response, after", [
    # (id, epoch) before -> the broker's answer -> (id, epoch, the partitions it now holds: the wanted ones?)
    ((0, FULL), answer(session_id=7), (7, 1, True)),               # a session given
    ((7, 4), answer(session_id=7), (7, 5, True)),                  # the next epoch
    ((7, LAST_EPOCH), answer(session_id=7), (7, 1, True)),         # an epoch wraps to 1, never to 0
    ((7, FULL), answer(session_id=9), (9, 1, True)),               # ours closed, a new one given
    ((0, FULL), answer(session_id=0), (0, FULL, False)),           # the broker made none (its cache is full)
    ((7, 4), answer(error_code=70, session_id=0), (0, FULL, False)),   # FETCH_SESSION_ID_NOT_FOUND: ask anew
    ((7, 4), answer(error_code=71, session_id=0), (7, FULL, False)),   # INVALID_FETCH_SESSION_EPOCH: close, ask
    ((7, 4), SimpleNamespace(topics=[]), (0, FULL, False)),        # a version without sessions (below 7)
])
def test_each_kind_of_answer_moves_the_session(before, response, after):
    session = FetchSession(id=before[0], epoch=before[1], partitions={A1: (1, 100)})
    wanted = {A0: (5, 100)}
    session.answered(wanted, response)
    assert (session.id, session.epoch, session.partitions == wanted) == after
    if not after[2]:
        assert session.partitions == {}  # the next request is full: it holds nothing to compare with


def test_a_lost_answer_makes_the_next_request_full_and_replace_the_session():
    session = FetchSession(id=7, epoch=4, partitions={A0: (5, 100)})
    session.lost()
    assert (session.id, session.epoch, session.partitions) == (7, FULL, {})
    assert session.changes({A0: (5, 100)}) == ({A0: (5, 100)}, [])


def test_on_the_wire_a_request_in_a_session_carries_only_what_moved_and_what_it_forgets():
    session = FetchSession(id=7, epoch=4, partitions={A0: (5, 100), A1: (0, 100), B0: (2, 100)})
    request = SessionFetchRequest(full_fetch({A0: (9, 100), A1: (0, 100)}), session)
    assert request.topics == [("a", [(0, 9, 100), (1, 0, 100)])]  # what aiokafka's fetcher reads offsets from

    v11 = request.build(FetchRequest_v11)
    assert (v11.session_id, v11.session_epoch, v11.rack_id) == (7, 4, "r1")
    assert v11.topics == [("a", [(0, -1, 9, -1, 100)])]           # leader epoch and log start unknown: -1
    assert v11.forgotten_topics_data == [("b", [0])]
    v9 = request.build(FetchRequest_v9)
    assert (v9.topics, v9.forgotten_topics_data) == ([("a", [(0, -1, 9, -1, 100)])], [("b", [0])])
    v7 = request.build(FetchRequest_v7)
    assert v7.topics == [("a", [(0, 9, -1, 100)])]


def test_the_request_that_ends_a_session_carries_its_id_the_closing_epoch_and_nothing_else():
    session = FetchSession(id=7, epoch=4, partitions={A0: (5, 100)})
    ending = SessionFetchRequest(FetchRequest(0, 0, 0, 0, []), session.closing()).build(FetchRequest_v11)
    assert (ending.session_id, ending.session_epoch, ending.topics, ending.forgotten_topics_data) == (7, CLOSE, [], [])
    assert (session.id, session.epoch) == (7, 4)  # the session itself is left as it was


def test_a_version_without_sessions_gets_the_full_fetch():
    session = FetchSession(id=7, epoch=4, partitions={A0: (5, 100)})
    v6 = SessionFetchRequest(full_fetch({A0: (9, 100), A1: (0, 100)}), session).build(FetchRequest_v6)
    assert v6.topics == [("a", [(0, 9, -1, 100), (1, 0, -1, 100)])]


class Client:
    def __init__(self, outcome):
        self.outcome = outcome
        self.cluster = "the cluster"

    async def send(self, node_id, request, **options):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


async def test_the_client_moves_the_session_by_the_answer_and_passes_other_requests_through():
    session = FetchSession()
    request = SessionFetchRequest(full_fetch({A0: (5, 100)}), session)
    response = answer(session_id=7, topics=[("a", [(0, 0, 10)])])
    client = _SessionsClient(Client(response))
    assert await client.send(1, request) is response
    assert (session.id, session.epoch, session.partitions) == (7, 1, {A0: (5, 100)})
    assert client.cluster == "the cluster"  # everything else is aiokafka's client's
    other = object()
    assert await client.send(1, other) is response and session.epoch == 1


@pytest.mark.parametrize("failure", [asyncio.CancelledError(), ConnectionError("broker gone")])
async def test_a_request_without_an_answer_leaves_the_next_one_full(failure):
    session = FetchSession(id=7, epoch=4, partitions={A0: (5, 100)})
    request = SessionFetchRequest(full_fetch({A0: (9, 100)}), session)
    with pytest.raises(type(failure)):
        await _SessionsClient(Client(failure)).send(1, request)
    assert (session.id, session.epoch, session.partitions) == (7, FULL, {})


async def test_an_answer_for_a_partition_not_asked_for_is_dropped_and_the_session_started_again():
    """aiokafka's fetcher looks each answered partition up among those it asked for: one it did not ask for
    would stop the fetcher. The broker should never send one; if it did, the session is not trusted any more."""
    session = FetchSession(id=7, epoch=4, partitions={A0: (5, 100)})
    request = SessionFetchRequest(full_fetch({A0: (5, 100)}), session)
    response = answer(session_id=7, topics=[("b", [(0, 0, 10)])])
    assert (await _SessionsClient(Client(response)).send(1, request)).topics == []
    assert (session.epoch, session.partitions) == (FULL, {})
