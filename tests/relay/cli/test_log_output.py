"""``--log-format json``: logrelay's own log lines as one JSON object each."""

from __future__ import annotations

import logging
import sys

import orjson

from relay.cli.log_output import JsonLogFormatter


def test_a_json_log_line_has_time_level_logger_message_and_the_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("logrelay.catcher", logging.ERROR, __file__, 1, "lost %d records", (3,), exc_info)
    record.created, record.msecs = 1_700_000_000.25, 250.0
    line = JsonLogFormatter().format(record)
    assert "\n" not in line
    parsed = orjson.loads(line)
    assert parsed["time"] == "2023-11-14T22:13:20.250Z"
    assert (parsed["level"], parsed["logger"], parsed["message"]) == ("ERROR", "logrelay.catcher", "lost 3 records")
    assert parsed["exception"].startswith("Traceback")
    assert "RuntimeError: boom" in parsed["exception"]
