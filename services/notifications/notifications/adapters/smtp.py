"""Email over SMTP: the message (text and HTML, stable Message-ID) and a sender using smtplib in a thread."""

import asyncio
import smtplib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any, Protocol

from ..domain.delivery import message_id


class MailSender(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


def build_email(row: dict[str, Any], recipient: dict[str, Any], mail_from: str, now: datetime) -> EmailMessage:
    """The email of one notification row; the same row always gives the same Message-ID."""
    message = EmailMessage()
    message["Message-ID"] = message_id(row["notification_id"])
    message["Date"] = format_datetime(now)
    message["From"] = mail_from
    message["To"] = formataddr((recipient["name"], recipient["email"]))
    message["Subject"] = row["subject"]
    message["X-Notification-Id"] = row["notification_id"]
    message["X-Notification-Kind"] = row["kind"]
    message.set_content(row["body_text"])
    if row["body_html"]:
        message.add_alternative(row["body_html"], subtype="html")
    return message


def is_permanent(error: BaseException) -> bool:
    """A 5xx answer (recipient or message refused for good): trying again will not help."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    code = getattr(error, "smtp_code", None)
    return isinstance(code, int) and code >= 500


@dataclass
class SmtpSender:
    host: str
    port: int
    timeout: float

    async def send(self, message: EmailMessage) -> None:
        # smtplib blocks: run it in a thread so the event loop (consumer heartbeats, HTTP) keeps going.
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            smtp.send_message(message)
