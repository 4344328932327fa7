"""The shared JSON logging (platform_runtime/logging.py) keeps emails, card tokens, bearer tokens and passwords out
of every line: the services' own and the libraries' records, exception texts included."""

import json
import logging

import pytest
from platform_runtime import logging as logs

pytestmark = pytest.mark.unit


@pytest.fixture
def lines(captured):
    return lambda: [json.loads(line) for line in captured.getvalue().splitlines()]


def test_emails_and_card_tokens_in_fields_and_messages_are_redacted(lines):
    log = logs.get_logger("t")
    log.warning("email_failed", error="550 5.1.1 <ann.lee+work@mail.example.co.uk>: Recipient address rejected",
                email="bob@example.test", detail={"token": "tok_visa", "note": "card tok_chargeDeclined refused"},
                items=["carol@example.test", 3], odd="to ü.ñ@例え.jp and x@localhost")
    (line,) = lines()
    text = json.dumps(line)
    for secret in ("ann.lee+work@mail.example.co.uk", "bob@example.test", "tok_visa", "tok_chargeDeclined",
                   "carol@example.test", "ü.ñ@例え.jp", "x@localhost"):
        assert secret not in text
    assert line["error"] == "550 5.1.1 <<email>>: Recipient address rejected"
    assert line["email"] == "<redacted>" and line["detail"]["token"] == "<redacted>"
    assert line["items"] == ["<email>", 3] and line["odd"] == "to <email> and <email>"


def test_bearer_tokens_and_passwords_are_redacted(lines):
    logs.get_logger("t").info("call", header="Authorization: Bearer abcDEF0123456789xyz",
                              dsn="postgresql://escrow:password=s3cretPW@db", conf='sasl.password="Xy12ab"',
                              password="p@ss")
    (line,) = lines()
    text = json.dumps(line)
    assert "abcDEF0123456789xyz" not in text and "s3cretPW" not in text and "Xy12ab" not in text
    assert "p@ss" not in text


def test_a_library_record_and_its_exception_are_redacted_too(lines):
    try:
        raise ValueError('duplicate key: Key (email)=(dave@example.test) already exists; card tok_visa')
    except ValueError:
        logging.getLogger("sqlalchemy.pool").exception("statement failed for %s", "erin@example.test")
    (line,) = lines()
    text = json.dumps(line)
    assert "dave@example.test" not in text and "erin@example.test" not in text and "tok_visa" not in text
    assert "ValueError" in line["exception"] and "<email>" in line["event"]


def test_ordinary_values_pass_unchanged(lines):
    logs.get_logger("t").info("service_started", port=8001, actor="admin:ops", command_id="c-1", ok=True,
                              subject="contract-1", next_token="2026-01-01~card-1")
    (line,) = lines()
    assert {k: line[k] for k in ("port", "actor", "command_id", "ok", "subject", "next_token")} == {
        "port": 8001, "actor": "admin:ops", "command_id": "c-1", "ok": True, "subject": "contract-1",
        "next_token": "2026-01-01~card-1"}
