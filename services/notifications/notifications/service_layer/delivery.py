"""The email delivery loop: pending email rows -> SMTP -> `sent` + NotificationSent, outside the consumer.

Set-based: a pass claims up to `batch_size` due rows in one statement (`FOR UPDATE SKIP LOCKED`, so
instances and workers never send the same row at once), sends them over one kept SMTP connection
(one thread hand-off for the batch), and in one transaction records every outcome in one statement
and queues NotificationSent or, after the retries are spent, NotificationFailed in the outbox. A
failure only moves that row's `next_attempt_at` (exponential backoff); the other rows go on.

A worker waits for work: it is woken when an email is inserted (LISTEN, platform_runtime/listener.py), one
idle worker per announcement; one worker per process also polls at `poll_seconds`, for retries that
fell due (and announcements lost while the listener reconnects).

Residual window, honestly: if the process dies after the SMTP server accepted a mail but before
this transaction commits, the row is still `pending` and is sent again. That second copy carries
the same Message-ID (derived from the notification id), so the receiving side can drop it; it is
the only way a person can get one notification twice (at-least-once there, exactly-once everywhere
else).
"""

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from prometheus_client import Counter

from platform_runtime.clock import Clock
from platform_runtime.logging import get_logger
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas.events.notifications import NotificationFailed, NotificationSent
from platform_schemas.topics import NOTIFICATIONS_EVENTS

from ..adapters.repository import NotificationRepository
from ..adapters.mime import OutgoingMail
from ..adapters.smtp import MailSender, UnsendableMail, build_email, is_permanent
from ..domain.delivery import FAILED, PENDING, SENT, RetryPolicy

log = get_logger(__name__)
EMAILS = Counter("notification_emails_total", "Email delivery attempts by outcome", ["outcome"])
WITHOUT_NAMES = Counter("notification_emails_without_names_total", "Emails sent with a stand-in for a name: the "
                        "person's registration had not been handled within NAMES_WAIT (domain/names.py)")


class RecipientAddressUnknown(Exception):
    """No AccountRegistered seen yet for the recipient (it travels on another partition): retried."""


class WorkSignal:
    """Wakes one idle worker per announcement: waking them all would have them race for the same rows.

    An announcement while every worker is busy is kept, so the next worker to finish looks again."""

    def __init__(self) -> None:
        self._idle: deque[asyncio.Future] = deque()
        self._kept = False

    def announce(self) -> None:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._kept = True

    async def wait(self, timeout: float | None) -> None:
        """Until announced or `timeout` seconds passed (None: until announced)."""
        if self._kept:
            self._kept = False
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        finally:
            with contextlib.suppress(ValueError):
                self._idle.remove(waiter)


class EmailDelivery:
    def __init__(self, new_uow: Callable[[], UnitOfWork], sender: MailSender, policy: RetryPolicy, clock: Clock,
                 mail_from: str, workers: int = 2, poll_seconds: float = 1.0, batch_size: int = 50) -> None:
        self.new_uow = new_uow
        self.sender = sender
        self.policy = policy
        self.clock = clock
        self.mail_from = mail_from
        self.workers = workers
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.signal = WorkSignal()

    def emails_due(self, _payload: str | None = None) -> None:
        """An email was inserted, or listening (re)started (the listener's callback): wake an idle worker."""
        self.signal.announce()

    async def run(self) -> None:
        """Forever, until cancelled: `workers` loops side by side, so a slow server holds up one batch, not all.
        Only the first polls; the others sleep until woken (by a new email, or a full batch before them)."""
        await asyncio.gather(*(self._work(polls=i == 0) for i in range(self.workers)))

    async def _work(self, polls: bool) -> None:
        while True:
            try:
                full = await self.deliver_due() >= self.batch_size
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - database trouble: the rows stay due for the next pass
                log.warning("email_delivery_failed", error=repr(error))
                full = False
            if full:
                self.signal.announce()  # more may be due: another idle worker takes the next batch meanwhile
            else:
                await self.signal.wait(self.poll_seconds if polls else None)

    async def deliver_due(self) -> int:
        """Try every due email of one batch once; returns how many were tried (0: nothing due)."""
        async with self.new_uow() as uow:
            repo = NotificationRepository(uow.session)
            due = await repo.claim_due_emails(self.clock.now(), self.batch_size)
            if not due:
                return 0
            errors = await self._send(due)
            outcomes = [self._sent(row, uow) if error is None else self._failed(row, error, uow)
                        for row, error in zip(due, errors)]
            await repo.record_outcomes(outcomes)
            await uow.commit()
            return len(due)

    async def _send(self, due: list[dict]) -> list[BaseException | None]:
        """Each row's error (None: the server took it); rows without a known address are not sent."""
        now = self.clock.now()
        errors: list[BaseException | None] = [None] * len(due)
        messages: list[OutgoingMail] = []
        sendable: list[int] = []
        for i, row in enumerate(due):
            if row["recipient_email"] is None:
                errors[i] = RecipientAddressUnknown(f"no email address known for {row['account_id']}")
                continue
            recipient = {"name": row["recipient_name"], "email": row["recipient_email"]}
            try:
                messages.append(build_email(row, recipient, self.mail_from, now))
            except UnsendableMail as unsendable:  # fails this row for good, not the whole batch for ever
                errors[i] = unsendable
                continue
            sendable.append(i)
        if messages:
            try:
                results = await self.sender.send_all(messages)
            except Exception as error:  # noqa: BLE001 - the sender itself failed: every mail of the batch retries
                results = [error] * len(messages)
            for i, result in zip(sendable, results):
                errors[i] = result
        return errors

    def _sent(self, row: dict, uow: UnitOfWork) -> dict:
        uow.publish(NOTIFICATIONS_EVENTS, NotificationSent(
            notification_id=row["notification_id"], account_id=row["account_id"], channel="email", kind=row["kind"],
            event_id=row["event_id"], contract_id=row["contract_id"]),
            subject=row["account_id"], event_id=f"{row['notification_id']}:sent", actor="system")
        EMAILS.labels("sent").inc()
        log.info("email_sent", notification_id=row["notification_id"], kind=row["kind"])
        if row["awaiting_names"]:
            WITHOUT_NAMES.inc()
            log.warning("email_sent_without_names", notification_id=row["notification_id"],
                        unknown=row["awaiting_names"])
        return _outcome(row, SENT, next_attempt_at=None, last_error=None, delivered_at=self.clock.now())

    def _failed(self, row: dict, error: BaseException, uow: UnitOfWork) -> dict:
        attempts = row["attempts"] + 1
        described = f"{type(error).__name__}: {error}"[:2000]
        retry_at = self.policy.next_attempt_at(attempts, self.clock.now(), is_permanent(error))
        if retry_at is not None:
            EMAILS.labels("retry").inc()
            log.warning("email_retry_later", notification_id=row["notification_id"], attempts=attempts,
                        retry_at=retry_at.isoformat(), error=described)
            return _outcome(row, PENDING, next_attempt_at=retry_at, last_error=described, delivered_at=None)
        uow.publish(NOTIFICATIONS_EVENTS, NotificationFailed(
            notification_id=row["notification_id"], account_id=row["account_id"], channel="email", kind=row["kind"],
            event_id=row["event_id"], attempts=attempts, error=described),
            subject=row["account_id"], event_id=f"{row['notification_id']}:failed", actor="system")
        EMAILS.labels("failed").inc()
        log.error("email_failed", notification_id=row["notification_id"], attempts=attempts, error=described)
        return _outcome(row, FAILED, next_attempt_at=None, last_error=described, delivered_at=None)


def _outcome(row: dict, status: str, **values) -> dict:
    return {"notification_id": row["notification_id"], "status": status, "attempts": row["attempts"] + 1, **values}
