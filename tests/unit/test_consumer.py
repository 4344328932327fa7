"""The runtime's consuming side on fakes: batches, poison messages, transient errors, the inbox.

BatchProcessor (platform_runtime/consumer.py) and the dispatchers (platform_runtime/dispatch.py)
run unchanged; the unit of work and the dead-letter topic are in-memory fakes.
"""

import json

import pytest
from platform_runtime.consumer import BatchProcessor, is_transient
from platform_runtime.context import HandlerContext
from platform_runtime.dispatch import CommandDispatcher, EventDispatcher
from platform_runtime.errors import Rejected, TransientError
from platform_schemas import Envelope, new_envelope
from platform_schemas.commands.contracts import RegisterAccount
from platform_schemas.events.contracts import AccountRegistered
from sqlalchemy.exc import DBAPIError, OperationalError

from tests.support.fakes import FakeDeadLetters, FakeStore, FakeUnitOfWork, record

pytestmark = pytest.mark.unit

EVENTS = "contracts.events"


def register(account_id: str = "a-1", name: str = "Ann", id: str | None = None) -> Envelope:
    return new_envelope(RegisterAccount(account_id=account_id, role="client", name=name,
                                        email=f"{account_id}@example.test"),
                        subject=account_id, actor="admin:tests", source="tests", id=id)


def raw(envelope: Envelope) -> bytes:
    return envelope.to_json()


class Recorder:
    """A handler that announces what it handled, and always fails on the accounts it is told to."""

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.calls: list[str] = []
        self.failing = failing

    async def __call__(self, cmd: RegisterAccount, ctx: HandlerContext) -> None:
        self.calls.append(cmd.account_id)
        ctx.uow.publish(EVENTS, AccountRegistered(account_id=cmd.account_id, role=cmd.role, name=cmd.name,
                                              email=cmd.email), subject=cmd.account_id)
        if cmd.account_id in self.failing:
            raise RuntimeError(f"boom on {cmd.account_id}")


def processor(handler, store: FakeStore, dead_letters: FakeDeadLetters, max_attempts: int = 3) -> BatchProcessor:
    dispatcher = CommandDispatcher("contracts.commands", {RegisterAccount: handler}, EVENTS)
    return BatchProcessor(topic="contracts.commands", dispatch=dispatcher.dispatch,
                          new_uow=lambda: FakeUnitOfWork(store), dead_letters=dead_letters,
                          max_attempts=max_attempts, backoff_seconds=0.001)


def announced(store: FakeStore) -> list[str]:
    return [o.envelope.data.get("account_id") for o in store.outbox if o.envelope.type == "AccountRegistered"]


# -- BatchProcessor: one transaction per batch, poison isolated -------------------------------


async def test_a_malformed_message_goes_to_the_dead_letter_topic_and_the_next_one_is_handled():
    store, dead = FakeStore(), FakeDeadLetters()
    offsets = await processor(Recorder(), store, dead).process([record(b"{not json", 0), record(raw(register()), 1)])
    assert dead.offsets == [0]
    _, error, attempts = dead.sent[0]
    assert error.startswith("unparseable envelope") and attempts == 1
    assert announced(store) == ["a-1"]
    assert list(offsets.values()) == [2]


@pytest.mark.parametrize("value", [b"", b"[]", b'{"id": "x"}', json.dumps({"specversion": "0.3"}).encode()])
async def test_any_value_that_is_not_a_cloudevents_envelope_is_dead_lettered(value):
    dead = FakeDeadLetters()
    await processor(Recorder(), FakeStore(), dead).process([record(value, 7)])
    assert dead.offsets == [7]


async def test_a_batch_is_committed_in_one_transaction():
    store = FakeStore()
    await processor(Recorder(), store, FakeDeadLetters()).process(
        [record(raw(register(f"a-{i}")), i) for i in range(5)])
    assert store.commits == 1
    assert announced(store) == [f"a-{i}" for i in range(5)]


async def test_a_batch_of_commands_carried_out_takes_no_savepoint():
    store = FakeStore()
    await processor(Recorder(), store, FakeDeadLetters()).process(
        [record(raw(register(f"a-{i}")), i) for i in range(5)])
    assert (store.commits, store.savepoints) == (1, 0)


class RefusesSome(Recorder):
    """Announces the account first, then refuses the names it is told to: the announcement must not survive."""

    def __init__(self, refused: tuple[str, ...]) -> None:
        super().__init__()
        self.refused = refused

    async def __call__(self, cmd: RegisterAccount, ctx: HandlerContext) -> None:
        await super().__call__(cmd, ctx)
        if cmd.name in self.refused:
            raise Rejected("already_exists", f"{cmd.name} is taken")


async def test_a_command_rejected_after_writing_has_its_batch_redone_with_a_savepoint_each():
    store, dead = FakeStore(), FakeDeadLetters()
    batch = [record(raw(register(f"a-{i}", name="Bad" if i == 2 else "Ann")), i) for i in range(4)]
    offsets = await processor(RefusesSome(("Bad",)), store, dead).process(batch)
    assert (store.commits, store.savepoints) == (1, 4)  # the first try rolled back, the second committed
    assert announced(store) == ["a-0", "a-1", "a-3"]  # the refused one's own write undone, the others kept
    rejected = [o.envelope.data for o in store.outbox if o.envelope.type == "CommandRejected"]
    assert [(r["command_id"], r["reason_code"]) for r in rejected] == [(batch_id(batch[2]), "already_exists")]
    assert dead.sent == [] and list(offsets.values()) == [4]


def batch_id(rec) -> str:
    return json.loads(rec.value)["id"]


async def test_a_message_that_keeps_failing_is_dead_lettered_after_max_attempts_and_the_rest_go_through():
    store, dead = FakeStore(), FakeDeadLetters()
    handler = Recorder(failing=("a-1",))
    batch = [record(raw(register(f"a-{i}")), i) for i in range(3)]
    offsets = await processor(handler, store, dead, max_attempts=3).process(batch)
    assert dead.offsets == [1]
    _, error, attempts = dead.sent[0]
    assert "boom" in error and attempts == 3
    assert handler.calls.count("a-1") == 1 + 3  # once in the failed batch, then alone max_attempts times
    assert announced(store) == ["a-0", "a-2"]  # once each: the failed batch left nothing behind
    assert list(offsets.values()) == [3]


async def test_a_poison_message_is_retried_alone_before_it_is_given_up():
    store, dead = FakeStore(), FakeDeadLetters()
    failures = [RuntimeError("first"), RuntimeError("second")]  # the batch try and the first alone try fail

    async def flaky(cmd, ctx):
        ctx.uow.publish(EVENTS, AccountRegistered(account_id=cmd.account_id, role=cmd.role, name=cmd.name,
                                              email=cmd.email), subject=cmd.account_id)
        if failures:
            raise failures.pop(0)

    await processor(flaky, store, dead, max_attempts=3).process([record(raw(register("a-1")), 0)])
    assert dead.sent == []
    assert announced(store) == ["a-1"]


async def test_an_unreachable_database_is_retried_without_limit_and_never_dead_lettered():
    store, dead = FakeStore(), FakeDeadLetters()
    down = [OperationalError("select", {}, ConnectionRefusedError("db down")) for _ in range(6)]

    async def needs_the_database(cmd, ctx):
        if down:
            raise down.pop(0)
        ctx.uow.publish(EVENTS, AccountRegistered(account_id=cmd.account_id, role=cmd.role, name=cmd.name,
                                              email=cmd.email), subject=cmd.account_id)

    await processor(needs_the_database, store, dead, max_attempts=2).process([record(raw(register()), 0)])
    assert dead.sent == []
    assert announced(store) == ["a-1"]


async def test_offsets_to_commit_are_the_next_offset_of_each_partition():
    store = FakeStore()
    batch = [record(raw(register("a-1")), 10, partition=0), record(b"junk", 11, partition=0),
             record(raw(register("a-2")), 4, partition=3)]
    offsets = await processor(Recorder(), store, FakeDeadLetters()).process(batch)
    assert {tp.partition: offset for tp, offset in offsets.items()} == {0: 12, 3: 5}


@pytest.mark.parametrize("error,transient", [
    (OperationalError("x", {}, Exception("down")), True),
    (ConnectionRefusedError(), True),
    (TransientError("gateway unavailable"), True),
    (DBAPIError("x", {}, Exception("gone"), connection_invalidated=True), True),
    (DBAPIError("x", {}, Exception("constraint")), False),
    (RuntimeError("bug"), False),
    (KeyError("missing"), False),
])
def test_only_errors_that_are_not_the_messages_fault_count_as_transient(error, transient):
    assert is_transient(error) is transient


# -- CommandDispatcher: every command ends in an effect, a silent duplicate or CommandRejected --


async def dispatch(envelope: Envelope, handler=None, uow: FakeUnitOfWork | None = None) -> FakeUnitOfWork:
    uow = uow or FakeUnitOfWork()
    await CommandDispatcher("contracts.commands", {RegisterAccount: handler or Recorder()}, EVENTS).dispatch(
        envelope, uow)
    return uow


def rejection(uow: FakeUnitOfWork) -> dict:
    assert uow.types() == ["CommandRejected"], uow.types()
    return uow.messages()[0].data


async def test_a_command_is_handled_and_recorded_in_the_inbox_in_the_same_transaction():
    command = register()
    uow = await dispatch(command)
    assert uow.types() == ["AccountRegistered"]
    assert uow.status_of(command.id)["status"] == "accepted"


async def test_the_same_command_id_with_the_same_body_has_no_new_effect():
    command, handler = register(), Recorder()
    uow = await dispatch(command, handler)
    await uow.commit()
    await dispatch(command, handler, uow)
    assert handler.calls == ["a-1"]
    assert uow.messages() == []


async def test_the_same_command_id_with_another_body_is_rejected_as_an_idempotency_conflict():
    first = register(name="Ann", id="cmd-1")
    uow = await dispatch(first)
    await uow.commit()
    await dispatch(register(name="Bob", id="cmd-1"), uow=uow)
    assert rejection(uow)["reason_code"] == "idempotency_conflict"
    assert uow.status_of("cmd-1")["status"] == "accepted"  # the first command's record is left alone


async def test_a_redelivered_conflicting_command_is_not_rejected_twice():
    uow = await dispatch(register(name="Ann", id="cmd-1"))
    await uow.commit()
    await dispatch(register(name="Bob", id="cmd-1"), uow=uow)
    await uow.commit()
    await dispatch(register(name="Bob", id="cmd-1"), uow=uow)
    assert uow.messages() == []


async def test_every_other_body_sent_under_a_used_command_id_is_rejected_too():
    uow = await dispatch(register(name="Ann", id="cmd-1"))
    for name in ("Bob", "Cid"):
        await uow.commit()
        await dispatch(register(name=name, id="cmd-1"), uow=uow)
        assert rejection(uow)["reason_code"] == "idempotency_conflict", name


async def test_an_unknown_command_type_is_rejected_and_its_status_says_so():
    command = register().model_copy(update={"type": "LaunchRocket"})
    uow = await dispatch(command)
    assert rejection(uow)["reason_code"] == "unknown_command"
    assert uow.status_of(command.id)["status"] == "rejected"
    assert uow.status_of(command.id)["outcome"]["reason_code"] == "unknown_command"


@pytest.mark.parametrize("data", [
    {"account_id": "a-1", "role": "client", "name": "Ann"},
    {"account_id": "a b", "role": "client", "name": "Ann", "email": "a@b.c"},
    {"account_id": "a-1", "role": "boss", "name": "Ann", "email": "a@b.c"},
    {"account_id": "a-1", "role": "client", "name": "Ann", "email": "a@b.c", "extra": 1},
])
async def test_a_command_with_invalid_data_is_rejected_as_invalid_data_naming_the_field(data):
    uow = await dispatch(register().model_copy(update={"data": data}))
    rejected = rejection(uow)
    assert rejected["reason_code"] == "invalid_data"
    assert rejected["message"]


async def test_an_unknown_schema_version_is_rejected():
    uow = await dispatch(register().model_copy(update={"dataschema": "urn:escrow:schema:RegisterAccount:9"}))
    assert rejection(uow)["reason_code"] == "unsupported_schema_version"


async def test_a_rejected_command_leaves_nothing_of_what_its_handler_had_queued():
    async def half_done(cmd, ctx):
        ctx.uow.publish(EVENTS, AccountRegistered(account_id="a-1", role="client", name="n", email="a@b.c"),
                    subject="a-1")
        raise Rejected("invalid_state", "changed my mind")

    uow = await dispatch(register(), half_done)
    assert rejection(uow)["reason_code"] == "invalid_state"


async def test_command_rejected_names_the_command_and_follows_its_key_and_correlation():
    command = register()
    uow = await dispatch(command.model_copy(update={"type": "LaunchRocket"}))
    rejected = uow.messages()[0]
    assert rejected.subject == command.subject
    assert rejected.correlationid == command.correlationid
    assert rejected.causationid == command.id
    assert rejected.data["command_id"] == command.id and rejected.data["command_type"] == "LaunchRocket"


async def test_a_handler_that_fails_unexpectedly_is_not_turned_into_a_rejection():
    async def broken(cmd, ctx):
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        await dispatch(register(), broken)


# -- EventDispatcher: other services' facts, handled once -----------------------------------


async def test_an_event_is_handled_once_however_often_it_is_delivered():
    handled = []

    async def on_registered(event, ctx):
        handled.append(event.account_id)

    dispatcher = EventDispatcher({AccountRegistered: on_registered})
    event = new_envelope(AccountRegistered(account_id="a-1", role="client", name="n", email="a@b.c"),
                         subject="a-1", actor="system", source="contracts")
    uow = FakeUnitOfWork()
    for _ in range(3):
        await dispatcher.dispatch(event, uow)
    assert handled == ["a-1"]


async def test_events_nobody_handles_are_ignored_and_not_recorded():
    uow = FakeUnitOfWork()
    event = new_envelope(AccountRegistered(account_id="a-1", role="client", name="n", email="a@b.c"),
                         subject="a-1", actor="system", source="contracts")
    await EventDispatcher({}).dispatch(event, uow)
    assert uow.status_of(event.id) is None


# -- events skipped by their ce_type header, unparsed and outside any transaction ---------------


def with_type(value: bytes, offset: int, event_type: str | None):
    base = record(value, offset, topic=EVENTS)
    base.headers = (("content-type", b"application/cloudevents+json"),
                    *((("ce_type", event_type.encode()),) if event_type else ()))
    return base


async def test_an_event_whose_ce_type_has_no_handler_is_skipped_without_a_parse_or_a_transaction():
    handled, opened = [], []

    async def on_registered(event, ctx):
        handled.append(event.account_id)

    dispatcher = EventDispatcher({AccountRegistered: on_registered})
    store = FakeStore()

    def new_uow():
        opened.append(1)
        return FakeUnitOfWork(store)

    events = BatchProcessor(topic=EVENTS, dispatch=dispatcher.dispatch, new_uow=new_uow,
                            dead_letters=FakeDeadLetters(), max_attempts=3, backoff_seconds=0.001,
                            handles=dispatcher.handles)
    registered = new_envelope(AccountRegistered(account_id="a-1", role="client", name="n", email="a@b.c"),
                              subject="a-1", actor="system", source="contracts")
    # Not even valid JSON: a skipped record is never parsed, so it cannot be dead-lettered either.
    offsets = await events.process([with_type(b"{not json", 0, "OfferSent"), with_type(b"{not json", 1, "BonusGiven")])
    assert opened == [] and list(offsets.values()) == [2]
    # A handled type, and a record without the header (another producer), are parsed and handled as before.
    await events.process([with_type(raw(registered), 2, "AccountRegistered"),
                          with_type(raw(registered), 3, None)])
    assert handled == ["a-1"] and len(opened) == 1


async def test_a_batch_of_handled_events_is_prefetched_once_before_its_handlers_run():
    calls = []

    async def prefetch(envelopes, uow):
        calls.append(("prefetch", [e.data["account_id"] for e in envelopes]))
        uow.batch["read"] = "once"

    async def on_registered(event, ctx):
        calls.append((event.account_id, ctx.uow.batch.get("read")))

    dispatcher = EventDispatcher({AccountRegistered: on_registered}, read_ahead=prefetch)
    events = BatchProcessor(topic=EVENTS, dispatch=dispatcher.dispatch, new_uow=lambda: FakeUnitOfWork(FakeStore()),
                            dead_letters=FakeDeadLetters(), max_attempts=3, backoff_seconds=0.001,
                            handles=dispatcher.handles, prefetch=dispatcher.prefetch)

    def registered(account_id):
        return raw(new_envelope(AccountRegistered(account_id=account_id, role="client", name="n", email="a@b.c"),
                                subject=account_id, actor="system", source="contracts"))
    # An event type without a handler is not among what is prefetched; one handled event alone is not prefetched.
    await events.process([with_type(registered("a-1"), 0, "AccountRegistered"), with_type(b"{}", 1, "OfferSent"),
                          with_type(registered("a-2"), 2, "AccountRegistered")])
    await events.process([with_type(registered("a-3"), 3, "AccountRegistered")])
    assert calls == [("prefetch", ["a-1", "a-2"]), ("a-1", "once"), ("a-2", "once"), ("a-3", None)]


def test_a_subscription_takes_its_event_dispatchers_handled_types_and_commands_skip_nothing():
    from platform_runtime.service import Subscription

    events = EventDispatcher({AccountRegistered: Recorder()})
    assert Subscription(EVENTS, events.dispatch).handles("AccountRegistered")
    assert not Subscription(EVENTS, events.dispatch).handles("OfferSent")
    commands = CommandDispatcher("contracts.commands", {RegisterAccount: Recorder()}, EVENTS)
    assert Subscription("contracts.commands", commands.dispatch).handles is None


def test_a_subscription_takes_its_event_dispatchers_prefetch():
    from platform_runtime.service import Subscription

    async def prefetch(envelopes, uow):
        pass

    events = EventDispatcher({AccountRegistered: Recorder()}, read_ahead=prefetch)
    assert Subscription(EVENTS, events.dispatch).prefetch is prefetch
    commands = CommandDispatcher("contracts.commands", {RegisterAccount: Recorder()}, EVENTS)
    assert Subscription("contracts.commands", commands.dispatch).prefetch is None


# -- One dispatcher's topics are read as one ------------------------------------------------------


def test_the_topics_of_one_dispatcher_are_grouped_and_different_dispatchers_stay_apart():
    from platform_runtime.service import Subscription, by_dispatcher

    replies = EventDispatcher({AccountRegistered: Recorder()})
    integrators, operators = (CommandDispatcher(topic, {RegisterAccount: Recorder()}, EVENTS)
                              for topic in ("contracts.commands", "contracts.admin-commands"))
    groups = by_dispatcher([Subscription("contracts.commands", integrators.dispatch),
                            Subscription("billing.events", replies.dispatch),
                            Subscription("contracts.admin-commands", operators.dispatch),
                            Subscription("escrow.events", replies.dispatch)])
    assert [[s.topic for s in group] for group in groups] == [
        ["contracts.commands"], ["billing.events", "escrow.events"], ["contracts.admin-commands"]]


async def test_a_fetched_batch_over_one_dispatchers_topics_is_one_transaction_and_one_read_ahead():
    from platform_runtime.service import per_processor
    from prometheus_client import REGISTRY

    calls, opened = [], []

    async def prefetch(envelopes, uow):
        calls.append(("prefetch", sorted(e.data["account_id"] for e in envelopes)))

    async def on_registered(event, ctx):
        calls.append(event.account_id)

    dispatcher = EventDispatcher({AccountRegistered: on_registered}, read_ahead=prefetch)
    store = FakeStore()

    def new_uow():
        opened.append(1)
        return FakeUnitOfWork(store)

    replies = BatchProcessor(topic="billing.events+escrow.events", dispatch=dispatcher.dispatch, new_uow=new_uow,
                             dead_letters=FakeDeadLetters(), max_attempts=3, backoff_seconds=0.001,
                             handles=dispatcher.handles, prefetch=dispatcher.prefetch)
    other = BatchProcessor(topic="contracts.commands", dispatch=dispatcher.dispatch, new_uow=new_uow,
                           dead_letters=FakeDeadLetters(), max_attempts=3, backoff_seconds=0.001)
    processors = {"billing.events": replies, "escrow.events": replies, "contracts.commands": other}

    def registered(account_id, offset, topic):
        envelope = new_envelope(AccountRegistered(account_id=account_id, role="client", name="n", email="a@b.c"),
                                subject=account_id, actor="system", source="contracts")
        return record(raw(envelope), offset, topic=topic)

    def consumed(topic: str) -> float:
        return REGISTRY.get_sample_value("messages_consumed_total", {"topic": topic}) or 0.0

    before = {t: consumed(t) for t in ("billing.events", "escrow.events")}
    fetched = [registered("a-1", 0, "billing.events"), registered("a-2", 0, "escrow.events"),
               registered("a-3", 1, "billing.events")]
    split = per_processor(processors, fetched)
    assert [(p.topic, [r.offset for r in rs]) for p, rs in split.items()] == [
        ("billing.events+escrow.events", [0, 0, 1])]
    offsets = await replies.process(split[replies])
    assert opened == [1]  # one transaction for the records of both topics
    assert calls == [("prefetch", ["a-1", "a-2", "a-3"]), "a-1", "a-2", "a-3"]
    assert {(tp.topic, offset) for tp, offset in offsets.items()} == {("billing.events", 2), ("escrow.events", 1)}
    # Counted under each record's own topic, as before.
    assert consumed("billing.events") - before["billing.events"] == 2
    assert consumed("escrow.events") - before["escrow.events"] == 1
