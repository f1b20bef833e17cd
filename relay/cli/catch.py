"""``logrelay catch``: the catcher, a server publishing SocketHandler records to a Redis stream."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import click

from relay.cli.config_show import log_effective_settings
from relay.cli.options import (
    CATCHER_OPTIONS,
    DEAD_LETTER_LENGTH_OPTION,
    LOG_OPTIONS,
    REDIS_URL_OPTION,
    STREAM_OPTIONS,
    catcher_settings,
    configure_logging,
    with_options,
)
from relay.common.signals import run_command
from relay.server import CatcherServer

__all__ = ["catch"]


@click.command()
@with_options(CATCHER_OPTIONS, REDIS_URL_OPTION, STREAM_OPTIONS, DEAD_LETTER_LENGTH_OPTION, LOG_OPTIONS)
def catch(**options: Any) -> None:
    """Accept logging.handlers.SocketHandler connections and publish each record to a Redis stream."""
    configure_logging(options)
    log_effective_settings()

    def build() -> tuple[Callable[[], Coroutine[Any, Any, int]], str]:
        settings = catcher_settings(options)
        return CatcherServer(settings).serve, f"cannot listen on {settings.listen}"

    run_command(build)
