"""Email over SMTP: the message (text and HTML, stable Message-ID) and a sender using smtplib in a thread."""

import asyncio
import smtplib
from datetime import datetime
from typing import Any, Protocol

from ..domain.delivery import message_id
from .mime import OutgoingMail, address, mail_bytes


class MailSender(Protocol):
    async def send_all(self, mails: list[OutgoingMail]) -> list[BaseException | None]:
        """Send each mail; per mail None (accepted) or the error that refused it."""
        ...


class UnsendableMail(ValueError):
    """The mail cannot be written (e.g. a line break in an address): no attempt can succeed."""


def build_email(row: dict[str, Any], recipient: dict[str, Any], mail_from: str, now: datetime) -> OutgoingMail:
    """The email of one notification row; the same row always gives the same Message-ID.

    Written straight to bytes (adapters/mime.py): the stdlib's EmailMessage parses back every header it is
    given, which was about a sixth of this service's CPU."""
    try:
        sender_name, sender = address(mail_from)
        headers = [
            ("Message-ID", message_id(row["notification_id"])),
            ("Date", now),
            ("From", (sender_name, sender)),
            ("To", (recipient["name"], recipient["email"])),
            ("Subject", row["subject"]),
            ("X-Notification-Id", row["notification_id"]),
            ("X-Notification-Kind", row["kind"]),
        ]
        data = mail_bytes(headers, row["body_text"], row["body_html"] or None, boundary=row["notification_id"])
    except ValueError as error:
        raise UnsendableMail(str(error)) from error
    return OutgoingMail(sender, [recipient["email"]], data)


def is_permanent(error: BaseException) -> bool:
    """A 5xx answer (recipient or message refused for good), or a mail that cannot be written: trying again will
    not help."""
    if isinstance(error, UnsendableMail):
        return True
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

    async def send_all(self, mails: list[OutgoingMail]) -> list[BaseException | None]:
        # smtplib blocks: run it in a thread so the event loop (consumer heartbeats, HTTP) keeps going.
        return await asyncio.to_thread(self._send_all, mails)

    def close(self) -> None:
        while self._idle:
            _quit(self._idle.pop())

    def _send_all(self, mails: list[OutgoingMail]) -> list[BaseException | None]:
        smtp = self._idle.pop() if self._idle else None
        results = []
        for mail in mails:
            smtp, outcome = self._send(smtp, mail)
            results.append(outcome)
        if smtp is not None:
            self._idle.append(smtp)
        return results

    def _send(self, smtp: smtplib.SMTP | None, mail: OutgoingMail) -> tuple[smtplib.SMTP | None, BaseException | None]:
        kept = smtp is not None
        try:
            if smtp is None:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            # An address that is not ASCII needs the server's SMTPUTF8 (smtplib says so when it has none), as
            # smtplib's send_message would ask.
            options = () if mail.ascii_addresses else ("SMTPUTF8", "BODY=8BITMIME")
            smtp.sendmail(mail.sender, mail.recipients, mail.data, options)
            return smtp, None
        except smtplib.SMTPServerDisconnected as error:
            _drop(smtp)
            return self._send(None, mail) if kept else (None, error)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError,
                smtplib.SMTPNotSupportedError) as refused:
            # this mail refused; smtplib reset the conversation, the connection goes on
            return smtp, refused
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
