"""From an envelope to a handler: schema lookup, validation, inbox, rejection, each in a savepoint."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from platform_schemas import Envelope, Message, parse_dataschema, registry
from platform_schemas.events.common import CommandRejected
from pydantic import ValidationError

from .context import ContextFactory, Handler, HandlerContext
from .errors import Rejected
from .logging import get_logger
from .unit_of_work import Cause, UnitOfWork, fingerprint

log = get_logger(__name__)


def _describe(error: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'data'}: {e['msg']}" for e in error.errors()[:5]]
    return "; ".join(parts)


@dataclass
class CommandDispatcher:
    """Commands from outside: every one ends in an effect, a no-op duplicate, or CommandRejected."""

    topic: str
    handlers: Mapping[type[Message], Handler]
    rejections_topic: str
    context: ContextFactory = HandlerContext
    _by_type: dict[str, Handler] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_type = {model.__name__: handler for model, handler in self.handlers.items()}

    async def dispatch(self, envelope: Envelope, uow: UnitOfWork) -> None:
        uow.cause = Cause.of(envelope)
        savepoint = await uow.session.begin_nested()
        queued = len(uow.outgoing)
        try:
            verdict = await uow.claim(envelope)
            if verdict == "duplicate":
                await savepoint.commit()
                return
            if verdict == "conflict":
                raise Rejected("idempotency_conflict",
                               f"command id {envelope.id} was already used with a different body")
            handler = self._by_type.get(envelope.type)
            if handler is None:
                self._unknown(envelope)
            await handler(self._parse(envelope), self.context(uow, envelope))
            await savepoint.commit()
        except Rejected as rejection:
            await savepoint.rollback()
            del uow.outgoing[queued:]
            await self._reject(envelope, rejection, uow)

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
        outcome = {"type": "CommandRejected", "reason_code": rejection.reason_code, "message": rejection.message}
        await uow.set_command_status(envelope.id, "rejected", outcome) \
            if rejection.reason_code != "idempotency_conflict" else None
        log.info("command_rejected", command_id=envelope.id, command_type=envelope.type,
                 reason_code=rejection.reason_code, reason=rejection.message)
        uow.publish(self.rejections_topic, CommandRejected(
            command_id=envelope.id, command_type=envelope.type,
            reason_code=rejection.reason_code, message=rejection.message,
        ), subject=envelope.subject)


@dataclass
class EventDispatcher:
    """Events (saga replies and other services' facts): handled once each, others ignored."""

    handlers: Mapping[type[Message], Handler]
    context: ContextFactory = HandlerContext
    _by_type: dict[str, Handler] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_type = {model.__name__: handler for model, handler in self.handlers.items()}

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
