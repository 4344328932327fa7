"""The sink's mailbox on disk: one .eml file per received message plus an append-only index (index.jsonl).

A message counts as received once its index line is written and synced; only then does the SMTP
server answer 250, so an accepted mail survives a crash of the sink, and a crash before that leaves
at most an orphan .eml that nobody lists (the sender, not told 250, sends again).

`durable=False` (SMTP_SINK_DURABLE=0) writes without syncing: the benchmark's choice, which measures the platform
on the same two cores as this stand-in and not the stand-in's disk (the two syncs were about half of its
2.75 ms of CPU per mail). A crash of the machine may then lose accepted mail; a crash of the sink alone does not.
"""

import json
import os
import time
import uuid
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

DEFAULT_DIR = "/var/tmp/escrow-platform/smtp-sink"
INDEX = "index.jsonl"


class MailStore:
    def __init__(self, directory: str | Path, durable: bool = True) -> None:
        self.directory = Path(directory)
        self.durable = durable

    def save(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> dict[str, Any]:
        """Store one message (synced to disk when durable); every copy is kept, so duplicates stay visible (same
        Message-ID)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        _write(self.directory / f".{name}.tmp", data, self.durable)
        os.replace(self.directory / f".{name}.tmp", self.directory / name)
        headers = BytesParser(policy=policy.default).parsebytes(data, headersonly=True)
        record = {
            "file": name, "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mail_from": mail_from, "rcpt_tos": rcpt_tos, "message_id": _header(headers, "Message-ID"),
            "to": _header(headers, "To"), "subject": _header(headers, "Subject"),
            "kind": _header(headers, "X-Notification-Kind"), "notification_id": _header(headers, "X-Notification-Id"),
        }
        with open(self.directory / INDEX, "a", encoding="utf-8") as index:
            index.write(json.dumps(record) + "\n")
            index.flush()
            if self.durable:
                os.fsync(index.fileno())
        return record

    def messages(self, to: str | None = None, bodies: bool = True) -> list[dict[str, Any]]:
        """Every received message in arrival order (optionally only those for one address), with its text and HTML."""
        path = self.directory / INDEX
        if not path.exists():
            return []
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if to:
            records = [r for r in records if to.lower() in (a.lower() for a in r["rcpt_tos"])]
        return [self._with_bodies(r) if bodies else r for r in records]

    def _with_bodies(self, record: dict[str, Any]) -> dict[str, Any]:
        message = BytesParser(policy=policy.default).parsebytes((self.directory / record["file"]).read_bytes())
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        return {**record, "text": _lines(text.get_content()) if text else "",
                "html": _lines(html.get_content()) if html else ""}


def read_messages(directory: str | Path | None = None, to: str | None = None) -> list[dict[str, Any]]:
    """What tests and the demo use without HTTP: the messages in SMTP_SINK_DIR."""
    return MailStore(directory or os.environ.get("SMTP_SINK_DIR", DEFAULT_DIR)).messages(to)


def _write(path: Path, data: bytes, synced: bool) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        if synced:
            os.fsync(file.fileno())


def _lines(body: str) -> str:
    return body.replace("\r\n", "\n")


def _header(message, name: str) -> str:
    """Unfolded, without the space a folded header keeps after its colon."""
    return " ".join(str(message.get(name, "")).split())
