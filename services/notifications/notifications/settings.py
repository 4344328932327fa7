"""Settings of the notifications service; durations take ISO 8601 (`PT10S`) or seconds."""

from datetime import timedelta
from pathlib import Path

from platform_runtime.settings import Duration, FetchMaxWaitMs, FetchMinBytes, Niceness, ServiceSettings

TEMPLATES = Path(__file__).parent / "templates"


class NotificationsSettings(ServiceSettings):
    http_port: int = 8004
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_timeout: Duration = timedelta(seconds=10)
    mail_from: str = "Escrow Platform <notifications@escrow-platform.example>"
    # The administrators' address: new disputes, overdue disputes and reactivation requests go there.
    admin_email: str = "administrators@escrow-platform.example"
    # Where the Jinja2 templates live: a person may point this at an edited copy, no code change needed.
    templates_dir: Path = TEMPLATES
    # Email delivery: each failure waits twice as long as the one before (up to the max), then gives up.
    delivery_max_attempts: int = 8
    delivery_retry_backoff: Duration = timedelta(seconds=10)
    delivery_retry_backoff_max: Duration = timedelta(minutes=30)
    # A new email wakes a delivery worker at once (LISTEN); the poll only finds retries that fell due.
    delivery_poll_interval: Duration = timedelta(seconds=1)
    # Each worker sends up to a batch of due emails per pass, over one kept SMTP connection.
    delivery_workers: int = 2
    delivery_batch_size: int = 50
    # How long an email naming someone whose registration has not been handled yet waits for it before it leaves
    # with "the client" or "the freelancer" instead of the name (domain/names.py). Registrations travel on other
    # partitions than contracts' events, so the wait is normally a batch or two.
    names_wait: Duration = timedelta(seconds=30)
    # Off the sagas' path, so its fetches wait for 64 KiB of events or 250 ms: at a steady rate a batch then holds
    # tens of events instead of one or two (a batch's cost is mostly fixed), and an email leaves at most 250 ms
    # later. CONSUMER_FETCH_MIN_BYTES=1 hands each event over at once, as the other services do.
    consumer_fetch_min_bytes: FetchMinBytes = 64 * 1024
    consumer_fetch_max_wait_ms: FetchMaxWaitMs = 250
    # Off the sagas' path for the CPU too: where it shares cores with the services a saga waits on, it takes its
    # turn after them (priority.py). Six alternated pairs: a burst of 1,000 fund sagas done a fifth sooner, the
    # p99 at 100/s a tenth lower, its own work a little later (README, issue 10's eighteenth step).
    # PROCESS_NICENESS=0 competes on equal terms.
    process_niceness: Niceness = 10
