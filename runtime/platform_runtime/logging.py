"""Structured JSON logs (structlog); correlation and causation ids ride in context variables.

The libraries' own log records (aiokafka, faststream, uvicorn, SQLAlchemy, alembic: the standard `logging`
module) go through the same processors, so every line on stdout is one JSON object with `timestamp`,
`level`, `event`, `logger` and the bound context (`service`, the message's ids, `trace_id`).
"""

import logging
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


def _drop_color_message(_logger, _name, event: dict) -> dict:
    event.pop("color_message", None)  # uvicorn's copy of the message with terminal colour codes
    return event


def configure(service: str, level: str = "INFO", stream=None) -> None:
    stream = stream or sys.stdout
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
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
        processors=[*_SHARED, structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
