"""The SMTP sender against a real SMTP server (aiosmtpd): a batch over one kept connection, a connection the
server closed meanwhile reopened once, a refused recipient failing only its own mail."""

import asyncio
import os
import smtplib
from email import policy
from email.parser import BytesParser
from datetime import datetime, timezone

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SmtpServer

from notifications.adapters.mime import OutgoingMail
from notifications.adapters.smtp import SmtpSender, build_email, is_permanent

pytestmark = pytest.mark.integration
PORT = int(os.environ.get("TEST_PORT_BASE", "18000")) + 27


class Recorder:
    def __init__(self) -> None:
        self.received: list[tuple[tuple, str]] = []  # (peer, recipient)
        self.contents: list[bytes] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refused"):
            return "550 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.extend((session.peer, to) for to in envelope.rcpt_tos)
        self.contents.append(envelope.original_content or envelope.content)
        return "250 Message accepted"


class ClosingController(Controller):
    """Closes every connection it accepted when stopped, as a server's idle timeout would."""

    def factory(self):
        server = SmtpServer(self.handler)
        self.servers = [*getattr(self, "servers", []), server]
        return server

    def close_connections(self) -> None:
        for server in getattr(self, "servers", []):
            if server.transport is not None:
                self.loop.call_soon_threadsafe(server.transport.close)


def mail(to: str) -> OutgoingMail:
    return build_email({"notification_id": f"id-{to}", "subject": "hello", "kind": "test", "body_text": "hello\n",
                        "body_html": None}, {"name": "", "email": to}, "n@example.test", datetime.now(timezone.utc))


@pytest.fixture
def server():
    recorder = Recorder()
    controller = ClosingController(recorder, hostname="127.0.0.1", port=PORT)
    controller.start()
    yield controller, recorder
    controller.stop()


async def test_a_batch_goes_over_one_connection_kept_for_the_next_batch(server):
    _, recorder = server
    sender = SmtpSender("127.0.0.1", PORT, 5)
    try:
        assert await sender.send_all([mail(f"a{i}@example.test") for i in range(3)]) == [None] * 3
        assert await sender.send_all([mail("b@example.test")]) == [None]
    finally:
        sender.close()
    assert len(recorder.received) == 4
    assert len({peer for peer, _ in recorder.received}) == 1


async def test_a_refused_recipient_fails_its_own_mail_only(server):
    _, recorder = server
    sender = SmtpSender("127.0.0.1", PORT, 5)
    try:
        results = await sender.send_all([mail("a@example.test"), mail("refused@example.test"),
                                         mail("c@example.test")])
    finally:
        sender.close()
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], smtplib.SMTPRecipientsRefused) and is_permanent(results[1])
    assert [to for _, to in recorder.received] == ["a@example.test", "c@example.test"]
    assert len({peer for peer, _ in recorder.received}) == 1


async def test_a_kept_connection_the_server_closed_is_reopened_once(server):
    controller, recorder = server
    sender = SmtpSender("127.0.0.1", PORT, 5)
    try:
        assert await sender.send_all([mail("a@example.test")]) == [None]
        controller.close_connections()
        await asyncio.sleep(0.2)
        assert await sender.send_all([mail("b@example.test")]) == [None]
    finally:
        sender.close()
    assert [to for _, to in recorder.received] == ["a@example.test", "b@example.test"]
    assert len({peer for peer, _ in recorder.received}) == 2


async def test_a_server_that_is_down_fails_every_mail_of_the_batch():
    sender = SmtpSender("127.0.0.1", PORT, 2)
    results = await sender.send_all([mail("a@example.test"), mail("b@example.test")])
    assert all(isinstance(r, OSError) for r in results)


async def test_a_mail_with_non_ascii_names_subject_and_bodies_arrives_as_written(server):
    _, recorder = server
    subject = "Offre reçue : « Identité visuelle » — 1 500,00 € 🎉"
    text = "Bonjour Zoë,\n.Point en début de ligne\n"
    mail_ = build_email({"notification_id": "id-zoe", "subject": subject, "kind": "offer_received",
                         "body_text": text, "body_html": "<p>Zoë 日本</p>\n"},
                        {"name": "Zoë Ñúñez, «Øster»", "email": "zoe@example.test"},
                        "Plateforme Séquestre <n@example.test>", datetime.now(timezone.utc))
    sender = SmtpSender("127.0.0.1", PORT, 5)
    try:
        assert await sender.send_all([mail_]) == [None]
    finally:
        sender.close()
    [received] = [BytesParser(policy=policy.default).parsebytes(data) for data in recorder.contents]
    assert received["Subject"] == subject
    assert str(received["To"]) == '"Zoë Ñúñez, «Øster»" <zoe@example.test>'
    assert received["From"].addresses[0].display_name == "Plateforme Séquestre"
    assert received.get_body(("plain",)).get_content().replace("\r\n", "\n") == text
    assert received.get_body(("html",)).get_content().replace("\r\n", "\n") == "<p>Zoë 日本</p>\n"
    assert [to for _, to in recorder.received] == ["zoe@example.test"]
