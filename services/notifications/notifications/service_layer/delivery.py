"""The email delivery loop: pending email rows -> SMTP -> `sent` + NotificationSent, outside the consumer.

Each worker takes one due row with `FOR UPDATE SKIP LOCKED` (so instances and workers never send
the same row at once), sends it, and in the same transaction marks it and queues NotificationSent
or, after the retries are spent, NotificationFailed in the outbox. A failure only moves that row's
`next_attempt_at` (exponential backoff); other rows go on.

Residual window, honestly: if the process dies after the SMTP server accepted a mail but before
this transaction commits, the row is still `pending` and is sent again. That second copy carries
the same Message-ID (derived from the notification id), so the receiving side can drop it; it is
the only way a person can get one notification twice (at-least-once there, exactly-once everywhere
else).
"""

import asyncio
from collections.abc import Callable

from prometheus_client import Counter

from platform_runtime.clock import Clock
from platform_runtime.logging import get_logger
from platform_runtime.loops import poll_forever
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas.events.notifications import NotificationFailed, NotificationSent
from platform_schemas.topics import NOTIFICATIONS_EVENTS

from ..adapters.repository import NotificationRepository
from ..adapters.smtp import MailSender, build_email, is_permanent
from ..domain.delivery import FAILED, SENT, RetryPolicy

log = get_logger(__name__)
EMAILS = Counter("notification_emails_total", "Email delivery attempts by outcome", ["outcome"])


class RecipientAddressUnknown(Exception):
    """No AccountRegistered seen yet for the recipient (it travels on another partition): retried."""


class EmailDelivery:
    def __init__(self, new_uow: Callable[[], UnitOfWork], sender: MailSender, policy: RetryPolicy, clock: Clock,
                 mail_from: str, workers: int = 4, poll_seconds: float = 0.5) -> None:
        self.new_uow = new_uow
        self.sender = sender
        self.policy = policy
        self.clock = clock
        self.mail_from = mail_from
        self.workers = workers
        self.poll_seconds = poll_seconds

    async def run(self) -> None:
        """Forever, until cancelled: `workers` loops side by side, so a slow server holds up one row, not all."""
        await asyncio.gather(*(self._work() for _ in range(self.workers)))

    async def _work(self) -> None:
        # Database trouble in a step leaves the row due for the next one.
        await poll_forever(self.deliver_one, self.poll_seconds, "email_delivery")

    async def deliver_one(self) -> bool:
        """Try the oldest due email once; False when nothing is due."""
        async with self.new_uow() as uow:
            repo = NotificationRepository(uow.session)
            row = await repo.next_due_email(self.clock.now())
            if row is None:
                return False
            try:
                recipient = await repo.account(row["account_id"])
                if recipient is None:
                    raise RecipientAddressUnknown(f"no email address known for {row['account_id']}")
                await self.sender.send(build_email(row, recipient, self.mail_from, self.clock.now()))
            except Exception as error:  # noqa: BLE001 - any send failure: back off, never block others
                await self._failed(row, error, repo, uow)
            else:
                await self._sent(row, repo, uow)
            await uow.commit()
            return True

    async def _sent(self, row: dict, repo: NotificationRepository, uow: UnitOfWork) -> None:
        now = self.clock.now()
        await repo.mark(row["notification_id"], status=SENT, attempts=row["attempts"] + 1, delivered_at=now,
                        next_attempt_at=None, last_error=None)
        uow.publish(NOTIFICATIONS_EVENTS, NotificationSent(
            notification_id=row["notification_id"], account_id=row["account_id"], channel="email", kind=row["kind"],
            event_id=row["event_id"], contract_id=row["contract_id"]),
            subject=row["account_id"], event_id=f"{row['notification_id']}:sent", actor="system")
        EMAILS.labels("sent").inc()
        log.info("email_sent", notification_id=row["notification_id"], kind=row["kind"])

    async def _failed(self, row: dict, error: Exception, repo: NotificationRepository, uow: UnitOfWork) -> None:
        attempts = row["attempts"] + 1
        described = f"{type(error).__name__}: {error}"[:2000]
        retry_at = self.policy.next_attempt_at(attempts, self.clock.now(), is_permanent(error))
        if retry_at is not None:
            await repo.mark(row["notification_id"], attempts=attempts, next_attempt_at=retry_at, last_error=described)
            EMAILS.labels("retry").inc()
            log.warning("email_retry_later", notification_id=row["notification_id"], attempts=attempts,
                        retry_at=retry_at.isoformat(), error=described)
            return
        await repo.mark(row["notification_id"], status=FAILED, attempts=attempts, next_attempt_at=None,
                        last_error=described)
        uow.publish(NOTIFICATIONS_EVENTS, NotificationFailed(
            notification_id=row["notification_id"], account_id=row["account_id"], channel="email", kind=row["kind"],
            event_id=row["event_id"], attempts=attempts, error=described),
            subject=row["account_id"], event_id=f"{row['notification_id']}:failed", actor="system")
        EMAILS.labels("failed").inc()
        log.error("email_failed", notification_id=row["notification_id"], attempts=attempts, error=described)
