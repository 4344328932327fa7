"""Settings of the billing service; durations take ISO 8601 (`PT5S`) or seconds."""

from datetime import datetime, time, timedelta
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_settings import BaseSettings, SettingsConfigDict

from platform_runtime.clock import Clock
from platform_runtime.settings import Duration, ServiceSettings

from .domain.gateway_work import RetryPolicy


def _time_or_off(value: object) -> object:
    return None if isinstance(value, str) and value.strip().lower() in ("off", "") else value


class BillingSettings(ServiceSettings):
    http_port: int = 8003
    gateway_database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:15432/gateway"
    # The gateway database's owner role: `billing migrate` makes the simulator's tables with it (the service
    # itself runs as the gateway's DML-only role, GATEWAY_DATABASE_URL).
    gateway_migration_database_url: str | None = None
    # The gateway loop (service_layer/gateway_loop.py): every call unanswered is made again after a backoff
    # doubling from GATEWAY_RETRY_BACKOFF up to GATEWAY_RETRY_BACKOFF_MAX, until the work's bound (from its
    # first call): a charge not made within GATEWAY_CHARGE_WITHIN fails as `gateway_unavailable`; a refund
    # not made within GATEWAY_REFUND_WITHIN (or refused) waits for an operator as `needs_attention`.
    # Both below contracts' SAGA_STEP_TIMEOUT x SAGA_STEP_ATTEMPTS (30 s x 3), so a saga gets billing's typed
    # answer before its own deadline escalates it.
    gateway_charge_within: Duration = timedelta(minutes=1)
    gateway_refund_within: Duration = timedelta(minutes=1)
    gateway_retry_backoff: Duration = timedelta(milliseconds=200)
    gateway_retry_backoff_max: Duration = timedelta(seconds=30)
    # A call that takes longer is treated as unanswered (the same key is asked again).
    gateway_call_timeout: Duration = timedelta(seconds=10)
    # Workers side by side in each instance, each claiming up to GATEWAY_BATCH due charges at once (one
    # statement, one settling transaction per batch); a slow call holds up its own batch, not the other workers.
    gateway_workers: int = 4
    gateway_batch: int = 50
    # Gateway calls in flight at once in each instance, all workers together.
    gateway_concurrency: int = 16
    # How long an idle worker waits for a NOTIFY of new work before looking anyway (a safety net).
    gateway_poll: Duration = timedelta(seconds=1)
    # The daily bonus batch runs at this UTC time for the business day that just ended; `off`: only
    # RunBonusBatch commands run batches (an outside scheduler, or tests).
    bonus_batch_at: Annotated[time | None, BeforeValidator(_time_or_off)] = time(0, 0)
    # How often an idle batch loop looks for work (a started batch, escrow's answers).
    bonus_batch_poll: Duration = timedelta(milliseconds=500)
    # Chunk sizes: each chunk is one short transaction, so memory and lock time stay flat in the batch size.
    bonus_batch_collect_chunk: int = 20_000
    bonus_batch_charge_chunk: int = 100
    bonus_batch_credit_chunk: int = 2000
    # Bonuses sent to escrow and not answered yet, at most (bounds escrow's and billing's transactions).
    bonus_batch_credits_in_flight: int = 10_000
    bonus_batch_gateway_concurrency: int = 8
    # A declined bonus charge is a past-due balance, retried by the batches of this many following days
    # (one charge a day), then its bonuses fail. 0: they fail at once.
    past_due_retry_days: int = 7
    # Shifts this process's clock (end-to-end tests run several business days in one session); 0 in production.
    clock_offset: Duration = timedelta(0)


class GatewayMigrationSettings(BaseSettings):
    """What `billing migrate` reads for the gateway simulator's database (the owner's URL, else the runtime's)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    gateway_migration_database_url: str | None = None
    gateway_database_url: str | None = None

    @property
    def url(self) -> str:
        url = self.gateway_migration_database_url or self.gateway_database_url
        if not url:
            raise ValueError("set GATEWAY_MIGRATION_DATABASE_URL (the gateway owner's URL) or GATEWAY_DATABASE_URL")
        return url


def retry_policy(settings: BillingSettings) -> RetryPolicy:
    return RetryPolicy(settings.gateway_retry_backoff, settings.gateway_retry_backoff_max)


class ShiftedClock:
    """Another clock, moved by a fixed offset."""

    def __init__(self, base: Clock, offset: timedelta) -> None:
        self.base = base
        self.offset = offset

    def now(self) -> datetime:
        return self.base.now() + self.offset
