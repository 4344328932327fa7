"""Structured JSON logs (structlog); correlation and causation ids ride in context variables.

The libraries' own log records (aiokafka, faststream, uvicorn, SQLAlchemy, alembic: the standard `logging`
module) go through the same processors, so every line on stdout is one JSON object with `timestamp`,
`level`, `event`, `logger` and the bound context (`service`, the message's ids, `trace_id`).

No line carries an email address, a card token, a bearer token or a password: `redact` runs last on every line,
the services' and the libraries' alike (exception texts included), whatever a log call or an error message put
in it. SQL parameters never reach an error message in the first place (database.py: hide_parameters).
"""

import logging
import re
import sys

import structlog

bind = structlog.contextvars.bind_contextvars
clear = structlog.contextvars.clear_contextvars

# Shared by the services' own lines and the libraries' records.
_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


# Fields whose whole value is a secret or personal, whatever it looks like.
SECRET_KEYS = frozenset({"email", "token", "card_token", "password", "sasl_password", "authorization", "http_token"})
_PATTERNS = (
    # anything@anything, as broad as the platform's own rule for an email (no space, one @): "ü@例え.jp" too
    (re.compile(r"[^\s@'\"<>()\[\]{},;:]+@[^\s@'\"<>()\[\]{},;:]+"), "<email>"),
    # the payment gateway's card tokens (tok_visa, tok_chargeDeclined...): a card token is as good as the card
    (re.compile(r"\btok_[A-Za-z0-9_]+"), "<card-token>"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 <redacted>"),
    (re.compile(r"(?i)\b(password|passwd|secret)(['\"]?\s*[=:]\s*['\"]?)[^\s'\",;]+"), r"\1\2<redacted>"),
)
REDACTED = "<redacted>"


def redact_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: object) -> object:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in SECRET_KEYS else _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_redact_value(v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    text = str(value)  # an object (an exception, a datetime): left to the renderer unless its text needs redacting
    redacted = redact_text(text)
    return value if redacted == text else redacted


def redact(_logger, _name, event: dict) -> dict:
    """The last processor before rendering: emails, card tokens, bearer tokens and passwords out of every value."""
    return {key: REDACTED if key.lower() in SECRET_KEYS else _redact_value(value) for key, value in event.items()}


def _drop_color_message(_logger, _name, event: dict) -> dict:
    event.pop("color_message", None)  # uvicorn's copy of the message with terminal colour codes
    return event


def configure(service: str, level: str = "INFO", stream=None) -> None:
    stream = stream or sys.stdout
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, redact, structlog.processors.JSONRenderer()],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "faststream", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # faststream installs its own plain-text stderr handler (propagate off), uvicorn may do the same.
    for name in ("faststream", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    structlog.configure(
        processors=[*_SHARED, structlog.processors.format_exc_info, redact, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
