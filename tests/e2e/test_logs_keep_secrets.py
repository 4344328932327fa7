"""No email address, card token, bearer token or password in the services' logs (nor their span files).

Runs last in the session (tests/e2e/conftest.py), after a story of its own that gives the logs every chance to
leak: people registered with emails, cards added and one declined, mail delivered, commands rejected with an
email and a card token in their invalid data, a message dead-lettered with one in its body, HTTP calls with good
and bad tokens. Then it reads every line the session's services wrote (from where this session began in each
log) and looks for the emails the whole run used (every AccountRegistered the client saw), any card token of the
gateway (`tok_...`), the read API's tokens, every secret of the local secrets directory (SCRAM passwords,
database passwords) and the passwords of the database roles the test platform made.
"""

import asyncio
import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from platform_runtime.client import new_id
from platform_runtime.credentials import Credentials
from platform_schemas.topics import BILLING_COMMANDS, CONTRACTS_ADMIN_COMMANDS, CONTRACTS_COMMANDS

from tests.support.checks import barrier, raw_command, send_raw_command
from tests.support.processes import LOGS, ROOT, TEST_PORTS
from tests.support.story import parties, send_offer

pytestmark = pytest.mark.e2e

CARD_TOKEN = re.compile(r"\btok_[A-Za-z0-9_]+")
PRINCIPALS = ("integrator", "admin", "analytics", "contracts", "escrow", "billing", "notifications")


def secrets_dir() -> Path:
    """$SECRETS_DIR as deploy/local/env.sh sets it for this environment."""
    done = subprocess.run(["bash", "-c", 'source deploy/local/env.sh >/dev/null && echo "$SECRETS_DIR"'], cwd=ROOT,
                          capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
    return Path(done.stdout.strip())


def secrets_of_this_machine() -> dict[str, str]:
    """name -> value: the tokens and passwords each principal's credentials give, and every file of the
    secrets directory (the database roles' passwords among them)."""
    found = {}
    for name in PRINCIPALS:
        credentials = Credentials.local(name)
        found[f"http-{name}"], found[f"kafka-{name}"] = credentials.http_token, credentials.sasl_password
    directory = secrets_dir()
    for path in directory.iterdir() if directory.is_dir() else ():
        if path.is_file() and not path.name.startswith("."):
            found[path.name] = path.read_text().strip()
    return {name: value for name, value in found.items() if value}


def session_log_text(platform) -> str:
    """What the services of this session wrote: their logs from where the session began, and its span files."""
    parts = []
    for path, start in platform.log_starts.items():
        with open(path, "rb") as log:
            log.seek(start)
            parts.append(log.read().decode("utf-8", "replace"))
    for spans in LOGS.glob(f"spans-{os.getpid()}-*.jsonl"):
        parts.append(spans.read_text("utf-8", "replace"))
    return "\n".join(parts)


async def mail_to(platform, address: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await platform.smtp.messages(to=address):
        assert time.monotonic() < deadline, f"no mail to {address} within {timeout}s"
        await asyncio.sleep(0.2)


async def leaky_story(client, platform) -> set[str]:
    """Everything that could put an email or a card token in a log line; returns the emails it used."""
    funded, declined = await asyncio.gather(parties(client), parties(client, token="tok_chargeDeclined"))
    (_, sent), (_, failed) = await asyncio.gather(send_offer(client, funded, amounts=(20_000,)),
                                                  send_offer(client, declined, amounts=(30_000,)))
    assert (sent.type, failed.type) == ("OfferSent", "OfferFundingFailed")

    leak_email = f"{new_id('leak')}@example.test"
    bad_register = await send_raw_command(client, raw_command(
        "RegisterAccount", {"account_id": new_id("leak"), "role": "nobody", "name": "Leak", "email": leak_email},
        subject="leak", actor="admin:tests"), topic=CONTRACTS_ADMIN_COMMANDS)
    bad_card = await send_raw_command(client, raw_command(
        "AddBillingMethod", {"account_id": funded.client_id, "billing_method_id": new_id("card"), "kind": "cheque",
                             "token": "tok_leakyToken", "make_primary": "yes", "note": leak_email},
        subject=funded.client_id, actor=funded.client_id), topic=BILLING_COMMANDS)
    for command in (bad_register, bad_card):
        outcome = await client.outcome(command, set())
        assert outcome.data["reason_code"] == "invalid_data", outcome.data
    # Not even JSON: dead-lettered, its bytes named in the failure.
    await client.send_raw(CONTRACTS_COMMANDS, f'{{"oops": "{leak_email}" tok_unparsable'.encode(), key="leak")
    await barrier(client, "leak")  # contracts has handled it

    integrator = await asyncio.to_thread(Credentials.local, "integrator")
    async with httpx.AsyncClient(timeout=30) as http:
        base = f"http://127.0.0.1:{TEST_PORTS['contracts']}"
        assert (await http.get(f"{base}/accounts/{leak_email}", headers=integrator.http_headers())).status_code == 404
        assert (await http.get(f"{base}/contracts/x", headers={"Authorization": "Bearer tok_visa"})).status_code == 401

    await mail_to(platform, f"{funded.freelancer_id}@example.test")  # offer received
    await mail_to(platform, f"{declined.client_id}@example.test")  # funding failed
    return {leak_email}


async def test_no_email_card_token_or_secret_appears_in_any_log_of_the_run(client, platform):
    used_emails = await leaky_story(client, platform)
    used_emails |= {e.data["email"] for e in client.events if isinstance(e.data.get("email"), str)}
    used_emails.add(platform.env["ADMIN_EMAIL"])
    secrets = await asyncio.to_thread(secrets_of_this_machine)
    secrets |= {f"db-role {role}": password for role, password in platform.passwords.items()}  # the harness's own
    assert len(used_emails) > 5 and {"http-integrator", "kafka-integrator"} <= set(secrets)

    text = session_log_text(platform)
    assert '"event": "service_started"' in text  # the logs are the ones this session wrote
    # as written, or as JSON writes it (a log line escapes what is not ASCII)
    leaks = [f"email {e}" for e in sorted(used_emails) if e in text or json.dumps(e)[1:-1] in text]
    leaks += [f"card token {t}" for t in sorted(set(CARD_TOKEN.findall(text)))]
    leaks += [f"secret {name}" for name, value in sorted(secrets.items()) if value in text]
    assert not leaks, f"found in the logs of {LOGS}: {leaks}"
