"""The ``logrelay`` command line.

Each command declares its options once, builds one settings object from
them and runs it.  Every option can also come from the environment:
``LOGRELAY_<COMMAND>_<OPTION>`` (``LOGRELAY_CATCH_REDIS_URL``), through
click's ``auto_envvar_prefix``.  Errors a user can fix are one line on
stderr and exit status 2 (usage) or 1 (runtime), never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import click

from relay import __version__
from relay.server import CatcherServer
from relay.settings import (
    DEFAULT_LISTEN,
    DEFAULT_REDIS_URL,
    DEFAULT_STREAM,
    CatcherSettings,
    ListenAddress,
    RedisSettings,
    StreamKeys,
    default_catcher_id,
    parse_byte_size,
)
from relay.wire import DecodeLimits

__all__ = ["main"]

ENVVAR_PREFIX = "LOGRELAY"


class ByteSize(click.ParamType):  # type: ignore[type-arg]
    """A byte count: ``1048576``, ``512KiB``, ``1MiB``."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_byte_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Address(click.ParamType):  # type: ignore[type-arg]
    name = "host:port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> ListenAddress:
        if isinstance(value, ListenAddress):
            return value
        try:
            return ListenAddress.parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group(context_settings={"auto_envvar_prefix": ENVVAR_PREFIX, "show_default": True})
@click.version_option(__version__, prog_name="logrelay")
def main() -> None:
    """logrelay: one central, exactly-once log for a fleet of Python services."""


@main.command()
@click.option(
    "--listen", type=Address(), default=DEFAULT_LISTEN, help="Address to accept SocketHandler connections on."
)
@click.option(
    "--redis-url", default=DEFAULT_REDIS_URL, help="Redis to publish to (redis://, rediss://, unix://)."
)
@click.option("--stream", default=DEFAULT_STREAM, help="Stream key records are added to.")
@click.option(
    "--dead-letter-stream",
    default="",
    show_default="{STREAM}:dead",
    help="Stream key for undecodable frames.",
)
@click.option(
    "--catcher-id",
    default=None,
    show_default="HOSTNAME-PID",
    help="Name recorded in every entry.",
)
@click.option(
    "--max-frame-bytes",
    type=ByteSize(),
    default="1MiB",
    help="Largest frame accepted; a larger header closes the connection.",
)
@click.option(
    "--max-decoded-bytes",
    type=ByteSize(),
    default="4MiB",
    help="Largest record once decoded (JSON size); larger goes to dead letters.",
)
@click.option(
    "--max-depth",
    type=click.IntRange(1, DecodeLimits.MAX_DEPTH_LIMIT),
    default=32,
    help="Deepest nesting accepted in a record.",
)
@click.option(
    "--buffer-bytes",
    type=ByteSize(),
    default="256MiB",
    help="Records held while Redis is slow or away; when full, reading stops.",
)
@click.option(
    "--batch-max-records", type=click.IntRange(1), default=1000, help="Most records per Redis round trip."
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=10_000,
    help="Open connections allowed; more are refused.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0),
    default=3600.0,
    help="Close a connection silent this many seconds (0: never).",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(0),
    default=5.0,
    help="On stop, seconds to keep reading open connections.",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(0),
    default=30.0,
    help="On stop, seconds to publish what is buffered.",
)
@click.option(
    "--redis-timeout",
    type=click.FloatRange(0.1),
    default=5.0,
    help="Seconds to wait for a Redis reply before retrying.",
)
@click.option(
    "--stats-interval",
    type=click.FloatRange(0),
    default=60.0,
    help="Seconds between stats log lines (0: only at exit).",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
def catch(**options: Any) -> None:
    """Accept logging.handlers.SocketHandler connections and publish each record to a Redis stream."""
    _configure_logging(options["log_level"])
    try:
        settings = catcher_settings(options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        code = asyncio.run(CatcherServer(settings).serve())
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {settings.listen}: {exc.strerror or exc}") from exc
    sys.exit(code)


def catcher_settings(options: dict[str, Any]) -> CatcherSettings:
    """Map ``catch``'s option values onto :class:`CatcherSettings`."""
    return CatcherSettings(
        listen=options["listen"],
        redis=RedisSettings.from_url(options["redis_url"], socket_timeout=options["redis_timeout"]),
        keys=StreamKeys(options["stream"], options["dead_letter_stream"]),
        limits=DecodeLimits(
            max_frame_bytes=options["max_frame_bytes"],
            max_depth=options["max_depth"],
            max_decoded_bytes=options["max_decoded_bytes"],
        ),
        catcher_id=options["catcher_id"] or default_catcher_id(),
        buffer_bytes=options["buffer_bytes"],
        batch_max_records=options["batch_max_records"],
        max_connections=options["max_connections"],
        idle_timeout=options["idle_timeout"],
        drain_timeout=options["drain_timeout"],
        shutdown_timeout=options["shutdown_timeout"],
        stats_interval=options["stats_interval"],
    )
