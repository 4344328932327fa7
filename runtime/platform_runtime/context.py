"""What every handler works with. Each service extends it with its repositories and ports (its bootstrap
builds one factory); every handler, of a command, an event or a timer, is `async def handle(message, ctx)`."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from platform_schemas import Envelope, Message

from .unit_of_work import UnitOfWork


@dataclass
class HandlerContext:
    """The unit of work and the envelope being handled (None for a timer)."""

    uow: UnitOfWork
    envelope: Envelope | None = None

    @property
    def now(self) -> datetime:
        return self.uow.clock.now()

    @property
    def actor(self) -> str:
        """Who sent the message being handled (`system` for a timer)."""
        if self.envelope is not None:
            return self.envelope.actor
        return self.uow.cause.actor if self.uow.cause else "system"

    @property
    def message_id(self) -> str:
        """The id of what is being handled: the envelope's, or the timer's cause."""
        if self.envelope is not None:
            return self.envelope.id
        return self.uow.cause.message_id if self.uow.cause else "system"

    async def complete(self, command_id: str | None, outcome: str, **details: object) -> None:
        """The final outcome of a command, shown by GET /commands/{id}."""
        if command_id:
            await self.uow.set_command_status(command_id, "completed", {"type": outcome, **details})


class ContextFactory(Protocol):
    def __call__(self, uow: UnitOfWork, envelope: Envelope | None = None) -> HandlerContext: ...


Handler = Callable[[Message, Any], Awaitable[None]]
TimerHandler = Callable[[dict[str, Any], Any], Awaitable[None]]
