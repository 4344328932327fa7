"""The sink process: SMTP on SMTP_HOST:SMTP_PORT, and `GET /messages` as JSON on SMTP_SINK_HTTP_PORT.

Environment: SMTP_HOST (127.0.0.1), SMTP_PORT (2525), SMTP_SINK_DIR (/var/tmp/escrow-platform/smtp-sink),
SMTP_SINK_HTTP_PORT (2526; 0 turns the HTTP side off), SMTP_SINK_HTTP_HOST (127.0.0.1; 0.0.0.0 in a container),
SMTP_SINK_DURABLE (1; 0 stores without syncing to disk, see store.py).
"""

import asyncio
import contextlib
import os
import signal

import uvicorn
import uvloop
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI

from .store import DEFAULT_DIR, MailStore


class StoringHandler:
    """aiosmtpd handler: answers 250 only once the message is on disk."""

    def __init__(self, store: MailStore) -> None:
        self.store = store

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content
        mail = (envelope.mail_from, list(envelope.rcpt_tos), data)
        # A synced write blocks for the disk: in a thread. Without the sync it is a page-cache copy, done here.
        record = await asyncio.to_thread(self.store.save, *mail) if self.store.durable else self.store.save(*mail)
        print(f"smtp-sink: stored {record['message_id']} to {','.join(record['rcpt_tos'])}", flush=True)
        return "250 Message accepted for delivery"


def http_app(store: MailStore) -> FastAPI:
    app = FastAPI(title="smtp-sink")

    @app.get("/messages")
    async def messages(to: str | None = None) -> dict:
        return {"items": await asyncio.to_thread(store.messages, to)}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "live"}

    return app


async def serve() -> None:
    host = os.environ.get("SMTP_HOST", "127.0.0.1")
    port = int(os.environ.get("SMTP_PORT", "2525"))
    http_port = int(os.environ.get("SMTP_SINK_HTTP_PORT", "2526"))
    http_host = os.environ.get("SMTP_SINK_HTTP_HOST", "127.0.0.1")
    store = MailStore(os.environ.get("SMTP_SINK_DIR", DEFAULT_DIR),
                      durable=os.environ.get("SMTP_SINK_DURABLE", "1").strip().lower() not in ("0", "false", "no"))
    handler = StoringHandler(store)
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(lambda: SMTP(handler, hostname="smtp-sink", loop=loop), host, port)
    print(f"smtp-sink: SMTP on {host}:{port}, storing in {store.directory}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    web = None
    if http_port:
        web = uvicorn.Server(uvicorn.Config(http_app(store), host=http_host, port=http_port, log_level="warning"))
        web.capture_signals = contextlib.nullcontext  # our handlers above stop both servers
        web_task = asyncio.create_task(web.serve())
        print(f"smtp-sink: GET http://{http_host}:{http_port}/messages", flush=True)
    await stop.wait()
    smtp.close()
    await smtp.wait_closed()
    if web:
        web.should_exit = True
        await web_task
    print("smtp-sink: stopped", flush=True)


def main() -> None:
    uvloop.run(serve())  # as the services run (EVENT_LOOP's default): the sink's protocol work is most of its CPU
