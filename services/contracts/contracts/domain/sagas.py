"""A saga's persisted state: where it stands and the log of the steps it took. Pure."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
_NAMESPACE = uuid.UUID("5b0c1f0e-8d8e-4c6b-9a51-0e7f0c3c2a11")


def saga_id_for(kind: str, started_by: str) -> str:
    """Deterministic: the same starting message always names the same saga (and gateway keys)."""
    return f"{kind}-{uuid.uuid5(_NAMESPACE, started_by).hex[:20]}"


@dataclass
class Saga:
    FIELDS: ClassVar[tuple[str, ...]] = ("saga_id", "kind", "contract_id", "command_id", "status", "step", "data",
                                         "step_log", "created_at", "updated_at")
    saga_id: str
    kind: str
    contract_id: str
    command_id: str | None
    status: str
    step: str
    data: dict[str, Any]
    step_log: list[dict[str, Any]] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def start(cls, kind: str, contract_id: str, command_id: str | None, started_by: str, first_step: str,
              data: dict[str, Any], now: datetime) -> "Saga":
        saga = cls(saga_id_for(kind, started_by), kind, contract_id, command_id, RUNNING, first_step, data,
                   [], now, now)
        saga._log(first_step, "started", now)
        return saga

    def step_id(self, step: str) -> str:
        """The participant's idempotency key for one step of this saga."""
        return f"{self.saga_id}:{step}"

    def expects(self, step: str) -> bool:
        return self.status == RUNNING and self.step == step

    def advance(self, outcome: str, next_step: str, now: datetime) -> None:
        self._log(self.step, outcome, now)
        self.step = next_step
        self._log(next_step, "started", now)

    def finish(self, status: str, outcome: str, now: datetime) -> None:
        self._log(self.step, outcome, now)
        self.status, self.step = status, "done"

    def _log(self, step: str, outcome: str, now: datetime) -> None:
        self.step_log = [*self.step_log, {"step": step, "outcome": outcome, "at": now.isoformat()}]
        self.updated_at = now
