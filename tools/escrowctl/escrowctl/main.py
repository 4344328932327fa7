"""escrowctl: the operator and integrator CLI of the escrow platform (typer + rich).

Every read takes `--json` (the service's answer as it is); tables otherwise. Exit codes: 0 done, 1 the
platform said no (rejected, not found, unreachable), 2 bad input (nothing was sent).
"""

import asyncio
import functools
import json
import time
from datetime import date, datetime, timezone
from typing import Annotated

import httpx
import typer
from aiokafka.errors import KafkaError
from platform_runtime.settings import _duration
from platform_schemas.topics import (
    BILLING_ADMIN_COMMANDS, BILLING_COMMANDS, CONTRACTS_ADMIN_COMMANDS, CONTRACTS_COMMANDS, TOPICS,
)

from . import kafka_io, render
from .commands import BadInput, build, read_data
from .settings import CtlSettings

app = typer.Typer(help="Operate and integrate with the escrow platform.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
dlq_app = typer.Typer(help="Dead-lettered messages: list, show, replay to their original topic.",
                      no_args_is_help=True)
bonus_app = typer.Typer(help="The daily bonus batch.", no_args_is_help=True)
account_app = typer.Typer(help="Suspend or reactivate an account (admin).", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(bonus_app, name="bonus-batch")
app.add_typer(account_app, name="account")

EVENT_TOPICS = [t.name for t in TOPICS if t.name.endswith(".events")]
OWNER = {CONTRACTS_COMMANDS: "contracts", CONTRACTS_ADMIN_COMMANDS: "contracts", BILLING_COMMANDS: "billing",
         BILLING_ADMIN_COMMANDS: "billing"}
Json = Annotated[bool, typer.Option("--json", help="Print the answer as JSON")]
Actor = Annotated[str, typer.Option(help="Who sends it: an account id, or admin:<name> for operators")]


@functools.cache
def settings() -> CtlSettings:
    return CtlSettings()


def http_headers() -> dict[str, str]:
    try:
        return settings().http_headers
    except RuntimeError as error:  # no HTTP_TOKEN, and no local platform to take one from
        raise fail(f"set HTTP_TOKEN to a token of the read API ({error})", 2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    render.err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def get(service: str, path: str, params: dict | None = None) -> dict | list:
    url = f"{settings().url(service)}{path}"
    try:
        response = httpx.get(url, params={k: v for k, v in (params or {}).items() if v is not None}, timeout=10,
                             headers=http_headers())
    except httpx.HTTPError as error:
        raise fail(f"{service} does not answer at {url} ({error}); set {service.upper()}_URL") from None
    if response.status_code in (401, 403, 404):  # their JSON message says it: not found, no or a bad token, no scope
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        raise fail(body.get("message") or f"{path}: {service} answered {response.status_code}")
    if response.status_code >= 400:
        raise fail(f"{service} answered {response.status_code}: {response.text[:500]}")
    return response.json()


# -- commands ------------------------------------------------------------------------------------


def send_command(type_name: str, data: dict, actor: str, subject: str | None = None, id: str | None = None,
                 wait: bool = True, timeout: float = 30.0, traceparent: str | None = None,
                 json_out: bool = False) -> None:
    try:
        topic, envelope = build(type_name, data, actor=actor, source=settings().source, subject=subject, id=id,
                                traceparent=traceparent)
    except BadInput as problem:
        raise fail(str(problem), 2) from None
    try:
        asyncio.run(kafka_io.publish(settings(), topic, envelope.to_json(), envelope.subject.encode()))
    except KafkaError as error:
        raise fail(f"Kafka at {settings().kafka_bootstrap_servers} did not take the command ({error}); "
                   "set KAFKA_BOOTSTRAP_SERVERS") from None
    if not wait:
        render.as_json({"command_id": envelope.id, "topic": topic}) if json_out else \
            render.out.print(f"sent {type_name} {envelope.id} to {topic}")
        return
    status = wait_for_status(OWNER[topic], envelope.id, timeout)
    if json_out:
        render.as_json(status)
    else:
        render.fields(f"{type_name} {envelope.id}", {k: v for k, v in status.items() if k != "outcome"}
                      | {f"outcome.{k}": v for k, v in (status.get("outcome") or {}).items()})
    if status.get("status") == "rejected":
        raise typer.Exit(1)


def wait_for_status(service: str, command_id: str, timeout: float) -> dict:
    """GET /commands/{id} until the command is completed or rejected (or the deadline: then as it stands)."""
    deadline = time.monotonic() + timeout
    last: dict = {"command_id": command_id, "status": "not yet seen"}
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{settings().url(service)}/commands/{command_id}", timeout=10,
                                 headers=http_headers())
        except httpx.HTTPError as error:
            raise fail(f"sent, but {service} does not answer at {settings().url(service)} ({error}); "
                       f"set {service.upper()}_URL") from None
        if response.status_code == 200:
            last = response.json()
            if last["status"] in ("completed", "rejected"):
                return last
        time.sleep(0.2)
    return last


@app.command()
def send(type_name: Annotated[str, typer.Argument(metavar="TYPE", help="Command type, e.g. SendOffer")],
         data: Annotated[str, typer.Option("--data", "-d", help="JSON object, @file.json or - (stdin)")] = "{}",
         actor: Actor = ..., subject: Annotated[str | None, typer.Option(
             help="Kafka key; by default the data's contract_id / account_id")] = None,
         id: Annotated[str | None, typer.Option(help="Command id (the idempotency key); new by default")] = None,
         wait: Annotated[bool, typer.Option(help="Wait for the command to complete or be rejected")] = True,
         timeout: float = 30.0, traceparent: Annotated[str | None, typer.Option(help="W3C trace context")] = None,
         json_out: Json = False) -> None:
    """Send any command, checked against its schema first (nothing is sent if it is invalid)."""
    try:
        parsed = read_data(data)
    except BadInput as problem:
        raise fail(str(problem), 2) from None
    send_command(type_name, parsed, actor, subject, id, wait, timeout, traceparent, json_out)


# -- events --------------------------------------------------------------------------------------


@app.command()
def events(topic: Annotated[list[str] | None, typer.Option(help="Topic to follow (repeatable); all event "
                                                                "topics by default")] = None,
           contract: Annotated[str | None, typer.Option(help="Only this contract's messages")] = None,
           type_name: Annotated[list[str] | None, typer.Option("--type", help="Only these types (repeatable)")] = None,
           correlation: Annotated[str | None, typer.Option(help="Only this correlation id")] = None,
           from_beginning: Annotated[bool, typer.Option(help="Start at the beginning, not at the end")] = False,
           since: Annotated[str | None, typer.Option(help="Start at this time: ISO 8601 (2026-12-01T10:00Z) or "
                                                         "a duration back from now (PT10M)")] = None,
           limit: Annotated[int | None, typer.Option(help="Stop after this many messages")] = None,
           timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds")] = None,
           json_out: Json = False) -> None:
    """Follow the streams live (Ctrl-C to stop), filtered by contract, type or correlation id."""
    def wanted(envelope) -> bool:
        return ((not contract or envelope.subject == contract or envelope.data.get("contract_id") == contract)
                and (not type_name or envelope.type in type_name)
                and (not correlation or envelope.correlationid == correlation))

    try:
        start = since_time(since) if since else None
    except ValueError as problem:
        raise fail(str(problem), 2) from None

    async def run() -> None:
        shown = 0
        async for record in kafka_io.follow(settings(), topic or EVENT_TOPICS, from_beginning, since=start):
            envelope = kafka_io.envelope_of(record)
            if envelope is None or not wanted(envelope):
                continue
            if json_out:
                print(json.dumps(envelope.model_dump(mode="json", exclude_none=True)), flush=True)
            else:
                render.out.print(f"[dim]{envelope.time:%H:%M:%S.%f}[/dim] [cyan]{record.topic}[/cyan] "
                                 f"[bold]{envelope.type}[/bold] {envelope.subject} "
                                 f"[dim]corr={envelope.correlationid}[/dim] {json.dumps(envelope.data)}",
                                 highlight=False)
            shown += 1
            if limit is not None and shown >= limit:
                return

    try:
        asyncio.run(asyncio.wait_for(run(), timeout) if timeout else run())
    except (TimeoutError, KeyboardInterrupt):
        pass


def since_time(text: str) -> datetime:
    """An ISO 8601 time (UTC if it names no offset) or an ISO 8601 duration back from now."""
    if text.upper().startswith("P"):
        try:
            return datetime.now(timezone.utc) - _duration(text)
        except Exception:  # noqa: BLE001 - isodate raises several kinds
            raise ValueError(f"--since {text!r} is neither a time nor a duration (PT10M)") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r} is neither a time (2026-12-01T10:00Z) nor a duration (PT10M)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# -- reads ---------------------------------------------------------------------------------------


@app.command()
def contract(contract_id: str, json_out: Json = False) -> None:
    """A contract with its milestones (and bonuses)."""
    body = get("contracts", f"/contracts/{contract_id}")
    if json_out:
        return render.as_json(body)
    render.fields(f"contract {contract_id}", body, skip=("milestones", "bonuses"))
    render.table("milestones", body.get("milestones", []))
    if body.get("bonuses"):
        render.table("bonuses", body["bonuses"])


@app.command()
def escrow(contract_id: str, json_out: Json = False) -> None:
    """What escrow holds for a contract, per milestone."""
    body = get("escrow", f"/escrow/{contract_id}")
    if json_out:
        return render.as_json(body)
    render.fields(f"escrow of {contract_id}", body, skip=("milestones",))
    render.table("held per milestone", body.get("milestones", []))


@app.command()
def history(account_id: str, json_out: Json = False) -> None:
    """An account's transaction history (billing)."""
    body = get("billing", f"/accounts/{account_id}/transactions")
    if json_out:
        return render.as_json(body)
    render.table(f"transactions of {account_id}", body.get("items", []))


@app.command()
def sagas(status: Annotated[str, typer.Option(help="needs_attention (an operator must act) or running")]
          = "needs_attention",
          stuck: Annotated[bool, typer.Option(help="Running sagas that have not moved for --older-than "
                                                   "(PT5M unless given)")] = False,
          older_than: Annotated[str | None, typer.Option(help="Not moved for this long: PT5M, or seconds")] = None,
          kind: Annotated[str | None, typer.Option(help="fund, release or refund")] = None,
          limit: int = 100, next: Annotated[str | None, typer.Option(help="Cursor printed by the previous page")] = None,
          json_out: Json = False) -> None:
    """Sagas that need attention, or are stuck (contracts' GET /sagas, the longest waiting first)."""
    if stuck:
        status, older_than = "running", older_than or "PT5M"
    body = get("contracts", "/sagas", {"status": status, "older_than": older_than, "kind": kind, "limit": limit,
                                      "next": next})
    if json_out:
        return render.as_json(body)
    render.table(f"sagas {status}" + (f" not moved for {older_than}" if older_than else ""), body["items"],
                 ["saga_id", "kind", "status", "step", "attempts", "contract_id", "command_id", "updated_at"])
    if body.get("next"):
        render.out.print(f"more: --next '{body['next']}'", highlight=False)


# -- dead letters --------------------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(topic: Annotated[list[str] | None, typer.Option(
        help="Original or .dlq topic (repeatable); every dead-letter topic by default")] = None,
             json_out: Json = False) -> None:
    """Every dead-lettered message: where it is, where it came from, why, and whether it was replayed."""
    topics = [t if t.endswith(".dlq") else f"{t}.dlq" for t in topic] if topic else kafka_io.DLQ_TOPICS
    letters = [d.summary() for d in asyncio.run(kafka_io.dead_letters(settings(), topics))]
    if json_out:
        return render.as_json(letters)
    render.table("dead letters", letters, ["position", "original", "type", "id", "attempts", "error", "replayed"])


@dlq_app.command("show")
def dlq_show(position: Annotated[str, typer.Argument(help="<topic>.dlq:<partition>:<offset>")],
             json_out: Json = False) -> None:
    """One dead letter with all its headers and its value."""
    letter = _letter(position)
    value = letter.record.value or b""
    try:
        shown = json.loads(value)
    except ValueError:
        shown = value.decode("utf-8", "replace")
    body = letter.summary() | {"headers": letter.headers, "value": shown}
    if json_out:
        return render.as_json(body)
    render.fields(f"dead letter {position}", letter.summary())
    render.fields("headers", letter.headers)
    render.out.print_json(json.dumps(shown)) if isinstance(shown, (dict, list)) else render.out.print(shown)


@dlq_app.command("replay")
def dlq_replay(positions: Annotated[list[str], typer.Argument(help="<topic>.dlq:<partition>:<offset> ...")],
               json_out: Json = False) -> None:
    """Publish dead letters again to their original topic, unchanged (same id: a message that was handled
    after all is dropped by the consumer's inbox)."""
    done = []
    for position in positions:
        letter = _letter(position)
        topic = asyncio.run(kafka_io.replay(settings(), letter))
        done.append({"position": position, "replayed_to": topic, "id": letter.summary()["id"]})
    if json_out:
        return render.as_json(done)
    render.table("replayed", done)


def _letter(position: str) -> kafka_io.DeadLetter:
    try:
        return asyncio.run(kafka_io.dead_letter_at(settings(), position))
    except ValueError as problem:
        raise fail(str(problem), 2) from None
    except LookupError as problem:
        raise fail(str(problem)) from None


# -- bonus batch, accounts -----------------------------------------------------------------------


@bonus_app.command("run")
def bonus_run(business_date: Annotated[str, typer.Argument(help="YYYY-MM-DD, today or earlier")],
              actor: Actor = "admin:escrowctl", wait: bool = True, timeout: float = 120.0,
              json_out: Json = False) -> None:
    """Run (or re-run) the bonus batch of a business day: RunBonusBatch."""
    send_command("RunBonusBatch", {"business_date": business_date}, actor, wait=wait, timeout=timeout,
                 json_out=json_out)


@bonus_app.command("status")
def bonus_status(business_date: Annotated[str, typer.Argument(help="YYYY-MM-DD")] = str(date.today()),
                 json_out: Json = False) -> None:
    """A day's bonus batch: status, counts and totals."""
    body = get("billing", f"/bonus-batches/{business_date}")
    if json_out:
        return render.as_json(body)
    render.fields(f"bonus batch {business_date}", body)


@account_app.command("suspend")
def account_suspend(account_id: str, reason: Annotated[str, typer.Option(help="Told to the account")],
                    appealable: Annotated[bool, typer.Option(help="May the account ask to be reactivated")] = True,
                    actor: Actor = "admin:escrowctl", json_out: Json = False) -> None:
    """Suspend an account (SuspendAccount)."""
    send_command("SuspendAccount", {"account_id": account_id, "reason": reason, "appealable": appealable}, actor,
                 json_out=json_out)


@account_app.command("reactivate")
def account_reactivate(account_id: str, actor: Actor = "admin:escrowctl", json_out: Json = False) -> None:
    """Reactivate a suspended account (ReactivateAccount)."""
    send_command("ReactivateAccount", {"account_id": account_id}, actor, json_out=json_out)


if __name__ == "__main__":
    app()
