"""logrelay's own log lines on stderr: text for people, or one JSON object per line (``--log-format json``)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, Final

import click
import orjson

from relay.cli.environment import warn_stray_variables

__all__ = ["LOG_OPTIONS", "JsonLogFormatter", "configure_logging"]

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

LOG_OPTIONS = [
    click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info"),
    click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        help="logrelay's own log lines on stderr: text, or one JSON object per line (time, level, logger, message).",
    ),
]


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message``,
    ``pid``, and ``exception`` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(options: Mapping[str, Any]) -> None:
    """Log to stderr at ``options["log_level"]``, in ``options["log_format"]`` (text unless given).

    Every command that logs calls this first: it then warns, in the same
    format, of each ``LOGRELAY_*`` variable that sets none of the running
    command's options (:mod:`relay.cli.environment`).
    """
    handler = logging.StreamHandler(sys.stderr)
    if options.get("log_format") == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=str(options.get("log_level", "info")).upper(), handlers=[handler])
    warn_stray_variables(logging.getLogger("logrelay.cli").warning)
