"""Every line a service writes is one JSON object of the same shape, its own and the libraries' alike."""

import io
import json
import logging

import pytest
from platform_runtime import logging as logs

pytestmark = pytest.mark.unit


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_library_records_are_json_lines_with_the_services_fields(captured):
    logs.bind(correlation_id="corr-1")
    logs.get_logger("probe.own").info("own_line", detail=1)
    logging.getLogger("aiokafka.consumer.group_coordinator").warning("Heartbeat failed for group %s", "probe")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("faststream").exception("handler crashed")
    assert len(lines(captured)) == 4, captured.getvalue()
    own, kafka, uvicorn, faststream = lines(captured)
    for line in (own, kafka, uvicorn, faststream):
        assert {"event", "level", "timestamp", "service", "correlation_id"} <= line.keys(), line
        assert line["service"] == "probe" and line["correlation_id"] == "corr-1"
    assert own["event"] == "own_line" and own["detail"] == 1
    assert kafka == kafka | {"event": "Heartbeat failed for group probe", "level": "warning",
                             "logger": "aiokafka.consumer.group_coordinator"}
    assert uvicorn["event"] == "Started server process [42]" and uvicorn["logger"] == "uvicorn.error"
    assert faststream["level"] == "error" and "ValueError: boom" in faststream["exception"]


def test_chatty_libraries_log_warnings_and_above_only(captured):
    logging.getLogger("aiokafka.conn").info("connected")
    logging.getLogger("faststream").debug("fetched")
    assert lines(captured) == []
