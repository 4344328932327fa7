"""Settings of the contracts service; durations take ISO 8601 (`P14D`) or seconds."""

from datetime import time, timedelta
from typing import Annotated

from pydantic import BeforeValidator

from platform_runtime.settings import Duration, ServiceSettings

from .domain.limits import Limits


def _time_or_off(value: object) -> object:
    return None if isinstance(value, str) and value.strip().lower() in ("off", "") else value


class ContractsSettings(ServiceSettings):
    http_port: int = 8001
    auto_release_after: Duration = timedelta(days=14)
    review_reminder_before: Duration = timedelta(days=2)
    refund_response_window: Duration = timedelta(days=7)
    dispute_resolve_within: Duration = timedelta(days=30)
    account_inactive_after: Duration = timedelta(days=365)
    bonus_window_after_end: Duration = timedelta(days=365)
    suspend_after_failed_charges: int = 5
    milestone_min_amount: int = 500
    milestone_max_amount: int = 100_000_000
    bonus_min_amount: int = 100
    bonus_max_amount: int = 10_000_000
    bonus_max_per_client_per_day: int = 100_000_000
    contract_max_total: int = 1_000_000_000
    inactivity_sweep_every: Duration = timedelta(days=1)
    # A saga step not answered within this (longer than billing's bounded gateway work) is sent again (same
    # step id), SAGA_STEP_ATTEMPTS times in all, each wait twice the one before; then the saga is
    # `needs_attention` (it still takes the step's answer if one comes).
    saga_step_timeout: Duration = timedelta(minutes=2)
    saga_step_attempts: int = 3
    # Billing's daily bonus batch time (the same BONUS_BATCH_AT), to tell people when pending bonuses move.
    bonus_batch_at: Annotated[time | None, BeforeValidator(_time_or_off)] = time(0, 0)

    @property
    def limits(self) -> Limits:
        return Limits(self.milestone_min_amount, self.milestone_max_amount, self.bonus_min_amount,
                      self.contract_max_total, self.bonus_max_amount, self.bonus_max_per_client_per_day)
