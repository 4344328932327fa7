"""What a saga definition is made of: a table of steps and of the replies that move it.

    SagaTable(kind, first step,
        steps   = {step: Ask(topic, build the participant's command[, taken_on=the answer it follows])},
        replies = [On(step, reply type, effect, next)],   next: a step, COMPLETED, FAILED or NEEDS_ATTENTION
    )

Read top to bottom a saga says which command each step sends to which participant, what each answer
does and where it leads; a step without an answer within SAGA_STEP_TIMEOUT is sent again with the
same step id, SAGA_STEP_ATTEMPTS times in all, then the saga is NEEDS_ATTENTION. A step `taken_on` an answer
is one its participant takes by itself when it reads that answer (escrow holds on billing's ClientCharged): the
saga waits for it as for any step, and sends its command only when the deadline passes. orchestrator.py
interprets every table the same way (the pattern of Eventuate Tram's saga definitions).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from platform_schemas import Message

from ...domain.contracts import Contract
from ...domain.sagas import COMPLETED, FAILED, NEEDS_ATTENTION, Saga

__all__ = ["COMPLETED", "FAILED", "NEEDS_ATTENTION", "Ask", "On", "SagaTable"]

# Builds a step's command from the saga (its id gives the step id, its data the amounts) and the contract.
Command = Callable[[Saga, Contract], Message]
# What an answer does to the contract, in the same transaction as the saga's move (events, outcomes).
Effect = Callable[[Saga, Any, Contract, Any], Awaitable[None]]


@dataclass(frozen=True)
class Ask:
    topic: str
    command: Command
    # The answer on which the participant takes this step by itself (platform_schemas.choreography): the command,
    # with the same step id, is then sent only on a re-send, when no answer came by the step's deadline.
    taken_on: type[Message] | None = None


@dataclass(frozen=True)
class On:
    step: str
    reply: type[Message]
    effect: Effect | None
    next: str


@dataclass(frozen=True)
class SagaTable:
    kind: str
    first: str
    steps: dict[str, Ask]
    replies: list[On]
    _by_reply: dict[tuple[str, type[Message]], On] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_reply", {(on.step, on.reply): on for on in self.replies})
        ends = set(self.steps) | {COMPLETED, FAILED, NEEDS_ATTENTION}
        for on in self.replies:
            if on.step not in self.steps or on.next not in ends:
                raise ValueError(f"{self.kind}: {on.step} --{on.reply.__name__}--> {on.next} leads nowhere")
        for step, ask in self.steps.items():
            if ask.taken_on is not None and {on.reply for on in self.replies if on.next == step} != {ask.taken_on}:
                raise ValueError(f"{self.kind}: {step} is taken on {ask.taken_on.__name__}, which alone must lead there")

    def on(self, step: str, reply: type[Message]) -> On | None:
        return self._by_reply.get((step, reply))

    @property
    def reply_types(self) -> set[type[Message]]:
        return {on.reply for on in self.replies}
