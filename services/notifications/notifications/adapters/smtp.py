"""Email over SMTP: the message (text and HTML, stable Message-ID) and a sender using smtplib in a thread."""

import asyncio
import smtplib
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any, Protocol

from ..domain.delivery import message_id


class MailSender(Protocol):
    async def send_all(self, messages: list[EmailMessage]) -> list[BaseException | None]:
        """Send each message; per message None (accepted) or the error that refused it."""
        ...


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


class SmtpSender:
    """smtplib in a worker thread, one hand-off per batch, over connections kept open between batches.

    A kept connection the server has closed meanwhile (idle timeout) fails at its first command: the mail is
    sent again once on a fresh connection. Any other error ends that connection; the next mail opens a new one.
    """

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._idle: list[smtplib.SMTP] = []  # one per concurrent batch at most; list.pop/append are atomic

    async def send_all(self, messages: list[EmailMessage]) -> list[BaseException | None]:
        # smtplib blocks: run it in a thread so the event loop (consumer heartbeats, HTTP) keeps going.
        return await asyncio.to_thread(self._send_all, messages)

    def close(self) -> None:
        while self._idle:
            _quit(self._idle.pop())

    def _send_all(self, messages: list[EmailMessage]) -> list[BaseException | None]:
        smtp = self._idle.pop() if self._idle else None
        results = []
        for message in messages:
            smtp, outcome = self._send(smtp, message)
            results.append(outcome)
        if smtp is not None:
            self._idle.append(smtp)
        return results

    def _send(self, smtp: smtplib.SMTP | None, message: EmailMessage) -> tuple[smtplib.SMTP | None, BaseException | None]:
        kept = smtp is not None
        try:
            if smtp is None:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            smtp.send_message(message)
            return smtp, None
        except smtplib.SMTPServerDisconnected as error:
            _drop(smtp)
            return self._send(None, message) if kept else (None, error)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as refused:
            return smtp, refused  # this message refused; smtplib reset the conversation, the connection goes on
        except Exception as error:  # noqa: BLE001 - timeouts, refused connections: this connection is done
            _drop(smtp)
            return None, error


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except Exception:  # noqa: BLE001 - the server went first
        smtp.close()


def _drop(smtp: smtplib.SMTP | None) -> None:
    """A broken connection is closed without a QUIT (which could wait a whole timeout for its answer)."""
    if smtp is not None:
        smtp.close()
