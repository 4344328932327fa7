"""A saga's persisted state: where it stands, its typed data and the log of the steps it took. Pure."""

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar

from platform_schemas.choreography import step_id
from pydantic import BaseModel, ConfigDict

RUNNING, COMPLETED, FAILED, NEEDS_ATTENTION = "running", "completed", "failed", "needs_attention"
FINAL = (COMPLETED, FAILED)
# A saga waiting for an operator still takes the answer of the step it stopped in (a participant that
# comes back late answers the re-sent step): it is not final.
WAITING = (RUNNING, NEEDS_ATTENTION)
NO_ANSWER = "no_answer"  # how a step escalated by its deadline ends in the step log
# Failure answers after which the participant still owes the step's final answer: billing keeps a refund
# the gateway refused (or never answered) for an operator's RetryRefund, whose ChargeRefunded ends the saga.
STILL_OWED = ("RefundChargeFailed",)
_NAMESPACE = uuid.UUID("5b0c1f0e-8d8e-4c6b-9a51-0e7f0c3c2a11")


def saga_id_for(kind: str, started_by: str) -> str:
    """Deterministic: the same starting message always names the same saga (and gateway keys)."""
    return f"{kind}-{uuid.uuid5(_NAMESPACE, started_by).hex[:20]}"


# -- each saga's typed data ----------------------------------------------------------------------


class SagaData(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MilestoneAmount(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    milestone_id: str
    amount: int


class FundData(SagaData):
    offer: bool  # the offer's first funding (OfferSent) or a later milestone's (MilestoneFunded)
    milestones: list[MilestoneAmount]
    currency: str
    charge_id: str | None = None  # once charged
    reason_code: str | None = None  # why the hold failed, once it did
    message: str | None = None

    @property
    def amount(self) -> int:
        return sum(m.amount for m in self.milestones)


class NextMilestone(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    milestone_id: str
    title: str
    amount: int
    due_date: date | None = None


class AfterRelease(BaseModel):
    """What the approval asked for once the money is released."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    end_contract: bool = False
    next_milestone: NextMilestone | None = None
    refund_amount: int = 0  # a dispute's split: the rest goes back to the client


class ReleaseData(SagaData):
    milestone_id: str
    amount: int
    automatic: bool = False
    then: AfterRelease = AfterRelease()


class RefundData(SagaData):
    milestone_id: str
    amount: int
    reason: str
    charge_id: str | None


DATA_TYPES: dict[str, type[SagaData]] = {"fund": FundData, "release": ReleaseData, "refund": RefundData}


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
    data: SagaData
    step_log: list[dict[str, Any]] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def start(cls, kind: str, contract_id: str, command_id: str | None, started_by: str, first_step: str,
              data: SagaData, now: datetime) -> "Saga":
        saga = cls(saga_id_for(kind, started_by), kind, contract_id, command_id, RUNNING, first_step, data,
                   [], now, now)
        saga._log(first_step, "started", now)
        return saga

    @classmethod
    def load(cls, row: dict[str, Any]) -> "Saga":
        saga = cls(**{k: row[k] for k in cls.FIELDS})
        saga.data = DATA_TYPES[saga.kind].model_validate(row["data"])
        return saga

    def step_id(self, step: str) -> str:
        """The participant's idempotency key for one step of this saga (the same on every re-send)."""
        return step_id(self.saga_id, step)

    def expects(self, step: str, escalates: bool = False) -> bool:
        """Waiting for this step's answer: running in it, or needing attention in it for want of an answer
        (any answer moves it), or after a failure for which the participant still owes the final answer
        (STILL_OWED: only an answer that moves it on). Any other failure answer was taken already."""
        if self.step != step or self.status not in WAITING:
            return False
        if self.status == RUNNING:
            return True
        last = self.step_log[-1]["outcome"]
        return last == NO_ANSWER or (last in STILL_OWED and not escalates)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    def attempts(self) -> int:
        """How often the current step was asked for: once (sent, or taken by its participant on its own), plus each
        re-send."""
        return 1 + sum(1 for e in self.step_log if e["step"] == self.step and e["outcome"] == "resent")

    def advance(self, outcome: str, next_step: str, now: datetime) -> None:
        self._log(self.step, outcome, now)
        self.status, self.step = RUNNING, next_step
        self._log(next_step, "started", now)

    def resent(self, now: datetime) -> None:
        self._log(self.step, "resent", now)

    def needs_attention(self, outcome: str, now: datetime) -> None:
        """No answer in time, however often asked: an operator looks; the step's answer is still taken."""
        self._log(self.step, outcome, now)
        self.status = NEEDS_ATTENTION

    def finish(self, status: str, outcome: str, now: datetime) -> None:
        self._log(self.step, outcome, now)
        self.status, self.step = status, "done"

    def _log(self, step: str, outcome: str, now: datetime) -> None:
        self.step_log = [*self.step_log, {"step": step, "outcome": outcome, "at": now.isoformat()}]
        self.updated_at = now
