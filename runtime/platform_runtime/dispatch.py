"""From an envelope to a handler: schema lookup, validation, inbox, rejection, each in a savepoint."""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from platform_schemas import Envelope, Message, parse_dataschema, registry
from platform_schemas.actors import Route, refusal
from platform_schemas.events.common import CommandRejected, StepFailed
from pydantic import ValidationError

from .context import ContextFactory, Handler, HandlerContext
from .errors import IsolationNeeded, Rejected
from .logging import get_logger
from .unit_of_work import Cause, UnitOfWork, fingerprint

log = get_logger(__name__)
# A saga participant's typed failure reply to one of its step commands: (command, reason_code, message,
# retryable) -> `<Step>Failed`, or None for a command that is no saga step.
FailureReply = Callable[[Message, str, str, bool], StepFailed | None]
# A batch read before its messages are handled: a service's `read_ahead`, a dispatcher's `prefetch`.
Prefetch = Callable[[list[Envelope], UnitOfWork], Awaitable[None]]
GAVE_UP = "processing_failed"  # the reason code of a step that could not be handled after every retry


def _describe(error: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'data'}: {e['msg']}" for e in error.errors()[:5]]
    return "; ".join(parts)


@dataclass
class CommandDispatcher:
    """Commands: every one ends in an effect, a no-op duplicate, or CommandRejected.

    A saga participant passes its `failure_reply`: then a step that is refused, or that cannot be handled
    after every retry (`give_up`, called by the consumer before the dead letter), is answered with its typed
    `<Step>Failed` instead, and the step id is remembered as failed, so the same step sent again (a saga's
    re-send after its deadline) gets the same answer and never a late effect after the saga compensated.
    """

    topic: str
    handlers: Mapping[type[Message], Handler]
    rejections_topic: str
    context: ContextFactory = HandlerContext
    failure_reply: FailureReply | None = None
    # For a topic other systems write (contracts.commands, billing.commands and their admin topics): each
    # command's one topic and the kinds of actor it accepts there (platform_schemas.actors.COMMAND_ROUTES);
    # None for the internal saga topics.
    routes: Mapping[str, Route] | None = None
    # A service's own reads of a fetched batch, done once before its commands are handled (contracts reads the
    # parties of a batch's offers); the consumer calls it through `prefetch`.
    read_ahead: Prefetch | None = None
    claim_status = "accepted"  # how the inbox records a command (claimed with the batch's others: consumer.py)
    _by_type: dict[str, Handler] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_type = {model.__name__: handler for model, handler in self.handlers.items()}

    @property
    def prefetch(self) -> Prefetch | None:
        """What the consumer calls once per batch: a saga participant's steps answered as failed before, looked
        up at once, and the service's own `read_ahead`."""
        return self._prefetch if self.failure_reply is not None or self.read_ahead is not None else None

    @property
    def kept_answers(self) -> Callable[[list[Envelope], UnitOfWork], list[str]] | None:
        """What the consumer calls before it claims a batch: the keys of the answers its handlers will ask for,
        read in the claims' statement (`UnitOfWork.claim_all`). None when this dispatcher asks for none."""
        return self.failed_steps_of if self.failure_reply is not None else None

    async def _prefetch(self, envelopes: list[Envelope], uow: UnitOfWork) -> None:
        if self.failure_reply is not None:
            # Free when the claims read them already (a batch's first try); one statement on its second try.
            await uow.recorded_many(self.failed_steps_of(envelopes, uow))
        if self.read_ahead is not None:
            await self.read_ahead(envelopes, uow)

    def failed_steps_of(self, envelopes: list[Envelope], uow: UnitOfWork) -> list[str]:
        """Where the batch's steps would be kept if they were answered as failed before, looked up together, not
        one per command. Each command is parsed here, for its step id, and handled from this parse (`_parsed`)."""
        parsed: dict[str, tuple[Envelope, Message]] = uow.batch.setdefault(_PARSED, {})
        keys = set()
        for envelope in envelopes:
            earlier = parsed.get(envelope.id)
            command = earlier[1] if earlier is not None and earlier[0] is envelope else self._try_parse(envelope)
            if command is not None and (key := self._failed_key(command)) is not None:
                parsed[envelope.id] = (envelope, command)
                keys.add(key)
        return sorted(keys)

    async def dispatch(self, envelope: Envelope, uow: UnitOfWork) -> None:
        uow.cause = Cause.of(envelope)
        if not uow.savepoint_per_message:
            # Most commands are carried out: their batch runs without a savepoint each (two round trips fewer
            # per command). A rejection must undo only its own command's writes, which takes a savepoint: the
            # consumer rolls the batch back and handles it again with one per message.
            try:
                await self._carry_out(envelope, uow)
            except Rejected:
                raise IsolationNeeded(envelope.id) from None
            return
        savepoint = await uow.session.begin_nested()
        queued = uow.checkpoint()
        try:
            await self._carry_out(envelope, uow)
            await savepoint.commit()
        except Rejected as rejection:
            await savepoint.rollback()
            uow.restore(queued)
            await self._reject(envelope, rejection, uow)

    async def _carry_out(self, envelope: Envelope, uow: UnitOfWork) -> None:
        """Claim, check and handle the command; raises Rejected for a command that cannot be carried out."""
        verdict = await uow.claim(envelope)
        if verdict == "duplicate":
            return
        if verdict == "conflict":
            raise Rejected("idempotency_conflict", f"command id {envelope.id} was already used with a different body")
        handler = self._by_type.get(envelope.type)
        if handler is None:
            self._unknown(envelope)
        self._check_edge(envelope)
        command = self._parsed(envelope, uow)
        if not await self._answered_as_failed_before(envelope, command, uow):
            await handler(command, self.context(uow, envelope))

    async def give_up(self, envelope: Envelope, error: BaseException, uow: UnitOfWork) -> bool:
        """The message could not be handled after every retry: answer its step as failed (the consumer
        dead-letters it next). False when it is no saga step of a participant, or was answered already."""
        command = self._try_parse(envelope)
        if self.failure_reply is None or command is None:
            return False
        failure = self.failure_reply(command, GAVE_UP, f"{envelope.type} could not be handled: {error!r}"[:2000],
                                     False)
        if failure is None:
            return False
        uow.cause = Cause.of(envelope)
        if await uow.claim(envelope, status="rejected") != "new":
            return False
        await self._answer_failed(envelope, failure, uow)
        log.error("saga_step_failed_after_retries", command_id=envelope.id, command_type=envelope.type,
                  saga_id=failure.saga_id, step_id=failure.step_id, error=repr(error))
        return True

    async def _answered_as_failed_before(self, envelope: Envelope, command: Message, uow: UnitOfWork) -> bool:
        """A step answered as failed stays failed: the same answer again, and no effect."""
        key = self._failed_key(command)
        if key is None:
            return False
        earlier = await uow.recorded(key)  # read with the batch's claims, or by the prefetch, or now
        if earlier is None:
            return False
        failure = self.failure_reply(command, earlier["reason_code"], earlier["message"], earlier["retryable"])
        uow.publish(self.rejections_topic, failure, subject=envelope.subject)
        return True

    async def _answer_failed(self, envelope: Envelope, failure: StepFailed, uow: UnitOfWork) -> None:
        outcome = {"type": type(failure).__name__, "reason_code": failure.reason_code, "message": failure.message,
                   "retryable": failure.retryable}
        await uow.set_command_status(envelope.id, "rejected", outcome)
        # The same step later in this batch sees it: `remember` keeps it for `recorded` too.
        await uow.remember(_failed_step_key(failure.step_id), type(failure).__name__, envelope.subject, outcome)
        uow.publish(self.rejections_topic, failure, subject=envelope.subject)

    def _failed_key(self, command: Message) -> str | None:
        """Where the answer of a saga step answered as failed is kept; None for a command that is no step."""
        probe = self.failure_reply(command, GAVE_UP, "", False) if self.failure_reply else None
        return _failed_step_key(probe.step_id) if probe is not None else None

    def _try_parse(self, envelope: Envelope) -> Message | None:
        try:
            return self._parse(envelope) if envelope.type in self._by_type else None
        except Rejected:
            return None

    def _parsed(self, envelope: Envelope, uow: UnitOfWork) -> Message:
        """The command, parsed once: by the batch's prefetch if it did (the same envelope, not only its id)."""
        cached = uow.batch.get(_PARSED, {}).pop(envelope.id, None)
        return cached[1] if cached is not None and cached[0] is envelope else self._parse(envelope)

    def _parse(self, envelope: Envelope) -> Message:
        try:
            version = parse_dataschema(envelope.dataschema)
        except ValueError as error:
            raise Rejected("invalid_data", str(error)) from None
        model = registry.model_for(envelope.type, version)
        if model is None:
            raise Rejected("unsupported_schema_version", f"{envelope.type} has no schema version {version}")
        try:
            return model.model_validate(envelope.data)
        except ValidationError as error:
            raise Rejected("invalid_data", _describe(error)) from None

    def _check_edge(self, envelope: Envelope) -> None:
        """At the edge, before the data is read: each command only on its own topic (an operator's on the admin
        topic, which only the admin principal may write), only from the kinds of actor its row names, never
        from `system`."""
        if self.routes is None:
            return
        reason = refusal(envelope.type, self.topic, envelope.actor, self.routes)
        if reason is not None:
            raise Rejected("forbidden", reason)

    def _unknown(self, envelope: Envelope) -> None:
        raise Rejected("unknown_command", f"{envelope.type!r} is not a command of {self.topic}")

    async def _reject(self, envelope: Envelope, rejection: Rejected, uow: UnitOfWork) -> None:
        if rejection.reason_code == "idempotency_conflict":
            # Remember each conflicting body under its own alias, so the redelivery of one is not
            # rejected twice while every other body sent under the same id still gets its rejection.
            alias = envelope.model_copy(update={"id": f"{envelope.id}#conflict:{fingerprint(envelope)[:16]}"})
            if await uow.claim(alias, status="rejected") != "new":
                return
        else:
            await uow.claim(envelope, status="rejected")
            command = self._try_parse(envelope) if self.failure_reply else None
            failure = self.failure_reply(command, rejection.reason_code, rejection.message, False) \
                if command is not None else None
            if failure is not None:
                log.info("saga_step_refused", command_id=envelope.id, command_type=envelope.type,
                         saga_id=failure.saga_id, step_id=failure.step_id, reason_code=rejection.reason_code)
                await self._answer_failed(envelope, failure, uow)
                return
        outcome = {"type": "CommandRejected", "reason_code": rejection.reason_code, "message": rejection.message}
        await uow.set_command_status(envelope.id, "rejected", outcome) \
            if rejection.reason_code != "idempotency_conflict" else None
        log.info("command_rejected", command_id=envelope.id, command_type=envelope.type,
                 reason_code=rejection.reason_code, reason=rejection.message)
        uow.publish(self.rejections_topic, CommandRejected(
            command_id=envelope.id, command_type=envelope.type,
            reason_code=rejection.reason_code, message=rejection.message,
        ), subject=envelope.subject)


# UnitOfWork.batch's key: commands parsed before the batch is handled (id -> (envelope, command)).
_PARSED = "dispatch.parsed"


def _failed_step_key(step_id: str) -> str:
    return f"failed-step:{step_id}"


@dataclass
class EventDispatcher:
    """Events (saga replies and other services' facts): handled once each, others ignored."""

    handlers: Mapping[type[Message], Handler]
    context: ContextFactory = HandlerContext
    # A service's own reads, in a few statements, of what a fetched batch's handlers will each read, left in
    # `uow.batch` for them (contracts: the sagas its replies answer); the consumer calls it through `prefetch`.
    read_ahead: Prefetch | None = None
    claim_status = "seen"  # how the inbox records an event (claimed with the batch's others: consumer.py)
    _by_type: dict[str, Handler] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_type = {model.__name__: handler for model, handler in self.handlers.items()}

    @property
    def prefetch(self) -> Prefetch | None:
        """What the consumer calls once per batch of two or more handled events, after their claim."""
        return self.read_ahead

    def handles(self, event_type: str) -> bool:
        """Whether this event type has a handler here: the consumer skips the others unparsed."""
        return event_type in self._by_type

    async def dispatch(self, envelope: Envelope, uow: UnitOfWork) -> None:
        handler = self._by_type.get(envelope.type)
        if handler is None:
            return
        uow.cause = Cause.of(envelope)
        if await uow.claim(envelope, status="seen") != "new":
            return
        model = registry.model_for(envelope.type, parse_dataschema(envelope.dataschema))
        if model is None:
            raise ValueError(f"no model for {envelope.type} {envelope.dataschema}")
        await handler(model.model_validate(envelope.data), self.context(uow, envelope))


# A participant's step implied by another service's event: the event as the step command it stands for (the same
# id), or None for an event that implies no step.
StepOf = Callable[[Envelope], Envelope | None]


@dataclass
class EventsAsSteps:
    """A topic of events some of which a saga participant takes as its own step commands (escrow holds a fund saga's
    charge on billing's ClientCharged, without waiting for the orchestrator's HoldEscrow).

    `step_of` turns such an event into the step command it implies, under the event's id; `steps` (the participant's
    CommandDispatcher) then handles it as if that command had come: claimed in the inbox once, answered with its
    success or its typed failure (kept under the step id, so the orchestrator's own command for the step, sent after
    its deadline, gets the same answer), and answered as failed by `give_up` before the event is dead-lettered. The
    topic's other events go to `others`. The consumer cannot claim the batch at once here (commands are claimed as
    `accepted`, events as `seen`), so the steps are claimed ahead by this dispatcher, one statement for a batch's.
    """

    steps: CommandDispatcher
    others: EventDispatcher
    step_of: StepOf
    step_types: frozenset[str]  # the event types `step_of` may turn into a step

    def handles(self, event_type: str) -> bool:
        """What the consumer parses: the events that may be steps, and what `others` handles."""
        return event_type in self.step_types or self.others.handles(event_type)

    async def prefetch(self, envelopes: list[Envelope], uow: UnitOfWork) -> None:
        """What the consumer calls for a batch of two or more: its steps claimed at once (`_claim_ahead`)."""
        steps = {e.id: step for e in envelopes if (step := self._step(e, uow)) is not None}
        await self._claim_ahead(list(steps.values()), uow)
        if self.others.prefetch is not None:
            await self.others.prefetch([e for e in envelopes if e.id not in steps], uow)

    async def dispatch(self, envelope: Envelope, uow: UnitOfWork) -> None:
        """A step to the participant; any other event, including one of a step's type that implies no step (a bonus
        batch's charge), to `others`, which handle it or pass it by as they would without steps."""
        step = self._step(envelope, uow)
        if step is not None:
            await self._claim_ahead([step], uow)  # a batch of one, which has no prefetch
            await self.steps.dispatch(step, uow)
        else:
            await self.others.dispatch(envelope, uow)

    async def give_up(self, envelope: Envelope, error: BaseException, uow: UnitOfWork) -> bool:
        step = self.step_of(envelope)
        return step is not None and await self.steps.give_up(step, error, uow)

    async def _claim_ahead(self, steps: list[Envelope], uow: UnitOfWork) -> None:
        """Steps claimed in one statement with the answers kept for them, as the consumer claims the participant's
        own topic (`read_batch`). Each once; none on a try with a savepoint per message, where each claim belongs in
        its savepoint."""
        claimed: set[str] = uow.batch.setdefault(_STEPS_CLAIMED, set())
        fresh = [step for step in steps if step.id not in claimed]
        if fresh and not uow.savepoint_per_message:
            claimed.update(step.id for step in fresh)
            await uow.claim_all(fresh, self.steps.claim_status, self.steps.failed_steps_of(fresh, uow))

    def _step(self, envelope: Envelope, uow: UnitOfWork) -> Envelope | None:
        """The step of an event, made once per batch: the participant finds its parse (`_PARSED`) by the same object."""
        made: dict[str, tuple[Envelope, Envelope | None]] = uow.batch.setdefault(_STEPS_MADE, {})
        earlier = made.get(envelope.id)
        if earlier is None or earlier[0] is not envelope:
            made[envelope.id] = earlier = (envelope, self.step_of(envelope))
        return earlier[1]


# UnitOfWork.batch's keys: event id -> (the event, its step), and the ids of the steps claimed ahead.
_STEPS_MADE, _STEPS_CLAIMED = "dispatch.steps_made", "dispatch.steps_claimed"
