"""W3C trace context through one service on real PostgreSQL: the consumed message's context becomes the
handler's span, every outbox row the handler writes carries it on, and so does a durable timer it schedules.
OpenTelemetry's SDK records the spans in memory (the services export them over OTLP when tracing is on)."""

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from platform_runtime import tracing
from platform_runtime.clock import FrozenClock
from platform_runtime.consumer import BatchProcessor
from platform_runtime.context import HandlerContext
from platform_runtime.dispatch import CommandDispatcher
from platform_runtime.relay import notify_channel
from platform_runtime.timers import TimerRunner
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope, new_envelope
from platform_schemas.commands.contracts import RegisterAccount
from platform_schemas.events.contracts import AccountMarkedInactive, AccountRegistered
from sqlalchemy import select

from tests.support.fakes import FakeDeadLetters, record
from tests.support.probe_service import runtime_tables_engine

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@pytest_asyncio.fixture(loop_scope="session")
async def service(infra):
    """A service of one command handler (it announces the account and schedules a timer) and one timer."""
    async with runtime_tables_engine(infra.postgres_url, "trace") as (_url, engine, metadata):
        clock = FrozenClock(NOW)

        def new_uow() -> UnitOfWork:
            return UnitOfWork(engine, metadata.tables, "tracetest", clock, notify_channel("tracetest"))

        async def register(cmd: RegisterAccount, ctx: HandlerContext) -> None:
            uow = ctx.uow
            uow.publish("contracts.events", AccountRegistered(account_id=cmd.account_id, role=cmd.role,
                                                              name=cmd.name, email=cmd.email), subject=cmd.account_id)
            await uow.schedule(f"sweep:{cmd.account_id}", "sweep", cmd.account_id, NOW + timedelta(days=1),
                               {"account_id": cmd.account_id})

        handled_payloads = []

        async def sweep(payload: dict, ctx: HandlerContext) -> None:
            handled_payloads.append(payload)
            ctx.uow.publish("contracts.events", AccountMarkedInactive(account_id=payload["account_id"],
                                                                  last_activity_at=NOW), subject=payload["account_id"])

        dispatcher = CommandDispatcher("contracts.commands", {RegisterAccount: register}, "contracts.events")
        consumer = BatchProcessor("contracts.commands", dispatcher.dispatch, new_uow, FakeDeadLetters(), 3, 0.01)
        timers = TimerRunner(new_uow, {"sweep": sweep}, clock)

        async def outbox() -> list[Envelope]:
            async with engine.connect() as conn:
                rows = (await conn.execute(select(metadata.tables["outbox"].c.payload)
                                           .order_by(metadata.tables["outbox"].c.seq))).scalars().all()
            return [Envelope.model_validate_json(r) for r in rows]

        yield consumer, timers, clock, outbox, handled_payloads


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing.use_provider(None)


def command(account_id: str, **extensions) -> Envelope:
    return new_envelope(RegisterAccount(account_id=account_id, role="client", name="Ann",
                                        email=f"{account_id}@example.test"),
                        subject=account_id, actor="admin:ops", source="tests", **extensions)


def parent_span_of(envelope: Envelope) -> tuple[str, str]:
    _version, trace_id, span_id, _flags = envelope.traceparent.split("-")
    return trace_id, span_id


async def test_one_trace_from_a_command_through_its_events_and_its_timer(service, spans):
    consumer, timers, clock, outbox, handled_payloads = service
    await consumer.process([record(command("acc-1", traceparent=TRACEPARENT).to_json(), 0, key=b"acc-1")])
    clock.advance(timedelta(days=2))
    assert await timers.fire_due() == 1

    handle, fired = spans.get_finished_spans()
    assert handle.name == "handle RegisterAccount" and fired.name == "timer sweep"
    assert {format(s.context.trace_id, "032x") for s in (handle, fired)} == {TRACE_ID}
    assert format(handle.parent.span_id, "016x") == CALLER_SPAN  # a child of the caller's span
    assert handle.attributes["messaging.destination.name"] == "contracts.commands"
    registered, inactive = await outbox()
    # each event names the span that caused it: the handler's, then the timer's
    assert parent_span_of(registered) == (TRACE_ID, format(handle.context.span_id, "016x"))
    assert parent_span_of(inactive) == (TRACE_ID, format(fired.context.span_id, "016x"))
    assert handled_payloads == [{"account_id": "acc-1"}]  # the handler never sees the stored trace context


async def test_binary_mode_trace_headers_start_the_same_trace(service, spans):
    consumer, _timers, _clock, outbox, _ = service
    structured = command("acc-2")
    headers = [(f"ce_{k}", str(v).encode()) for k, v in structured.model_dump(mode="json", exclude_none=True)
               .items() if k != "data"] + [("ce_traceparent", TRACEPARENT.encode()),
                                            ("content-type", b"application/json")]
    raw = record(b'{"account_id": "acc-2", "role": "client", "name": "Ann", "email": "a@example.test"}', 0,
                 key=b"acc-2")
    await consumer.process([dataclasses.replace(raw, headers=tuple(headers))])
    (handle,) = spans.get_finished_spans()
    assert format(handle.context.trace_id, "032x") == TRACE_ID
    assert parent_span_of((await outbox())[-1]) == (TRACE_ID, format(handle.context.span_id, "016x"))


async def test_with_tracing_off_the_context_passes_through_unchanged_and_none_is_made_up(service):
    consumer, _timers, _clock, outbox, _ = service
    await consumer.process([record(command("acc-3", traceparent=TRACEPARENT, tracestate="vendor=1").to_json(), 0,
                                   key=b"acc-3")])
    await consumer.process([record(command("acc-4").to_json(), 1, key=b"acc-4")])
    *_, traced, untraced = await outbox()
    assert traced.subject == "acc-3" and traced.traceparent == TRACEPARENT and traced.tracestate == "vendor=1"
    assert untraced.subject == "acc-4" and untraced.traceparent is None


async def test_a_malformed_traceparent_is_ignored_not_a_reason_to_reject(service, spans):
    consumer, _timers, _clock, outbox, _ = service
    await consumer.process([record(command("acc-5", traceparent="00-nonsense").to_json(), 0, key=b"acc-5")])
    (handle,) = spans.get_finished_spans()
    assert handle.parent is None  # a new trace
    event = (await outbox())[-1]
    assert event.type == "AccountRegistered" and parent_span_of(event)[0] == format(handle.context.trace_id, "032x")
