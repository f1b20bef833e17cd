"""The ``logrelay`` command line.

Each command takes its options from the shared lists in :mod:`relay.options`,
builds one settings object from them and runs it.  Every option can also come
from the environment: ``LOGRELAY_<COMMAND>_<OPTION>`` (``LOGRELAY_CATCH_REDIS_URL``,
``LOGRELAY_CONSUME_FILE_OUTPUT``, ``LOGRELAY_UP_LISTEN``), through click's
``auto_envvar_prefix``.  Errors a user can fix are one line on stderr and exit
status 2 (usage) or 1 (runtime), never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import click

from consumers.cli import FILE_OPTIONS, consume, file_consumer_settings
from relay import __version__
from relay.lifecycle import run_command
from relay.options import (
    CATCHER_OPTIONS,
    LOG_OPTIONS,
    REDIS_URL_OPTION,
    STREAM_OPTIONS,
    catcher_settings,
    configure_logging,
    redis_settings,
    with_options,
)
from relay.server import CatcherServer
from relay.settings import RedisSettings
from relay.up import EMBEDDED_BROKER, UpRunner

__all__ = ["ENVVAR_PREFIX", "main"]

ENVVAR_PREFIX = "LOGRELAY"


@click.group(context_settings={"auto_envvar_prefix": ENVVAR_PREFIX, "show_default": True})
@click.version_option(__version__, prog_name="logrelay")
def main() -> None:
    """logrelay: one central, exactly-once log for a fleet of Python services."""


main.add_command(consume)


@main.command()
@with_options(CATCHER_OPTIONS, REDIS_URL_OPTION, STREAM_OPTIONS, LOG_OPTIONS)
def catch(**options: Any) -> None:
    """Accept logging.handlers.SocketHandler connections and publish each record to a Redis stream."""
    configure_logging(options["log_level"])

    def build() -> tuple[Callable[[], Coroutine[Any, Any, int]], str]:
        settings = catcher_settings(options)
        return CatcherServer(settings).serve, f"cannot listen on {settings.listen}"

    run_command(build)


@main.command()
@with_options(
    CATCHER_OPTIONS,
    [click.option("--redis-url", default=None, show_default="embedded broker", help="Redis URL; none: in-process.")],
    STREAM_OPTIONS,
    FILE_OPTIONS,
    LOG_OPTIONS,
)
def up(**options: Any) -> None:
    """Run a catcher and the file consumer in one process: a central log server in one command."""
    configure_logging(options["log_level"])

    def build() -> tuple[Callable[[], Coroutine[Any, Any, int]], str]:
        embedded = options["redis_url"] is None
        redis = RedisSettings(url=EMBEDDED_BROKER) if embedded else redis_settings(options)
        catcher = catcher_settings(options, redis)
        consumer = file_consumer_settings(options, redis)
        failure = f"cannot serve on {catcher.listen} into {consumer.output}"
        return UpRunner(catcher, consumer, embedded=embedded).serve, failure

    run_command(build)
