"""Running a long-lived service: stop signals and the CLI's exit path, in one place."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn

import click

from relay.common.redis_refusal import RedisRefused

__all__ = ["StartError", "option_naming", "run_command", "serve_with_signals"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StartError(OSError):
    """The system refused something a service needs, with a message that says what, where and why.

    :func:`run_command` prints it as it is, not after the command's own
    description of a failure (which names another address or file).
    """


async def serve_with_signals(run: Callable[[], Awaitable[int]], on_signal: Callable[[], None]) -> int:
    """Await ``run()`` with SIGTERM/SIGINT calling ``on_signal`` (registered on the loop, as arq does)."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    try:
        return await run()
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


def run_command(build: Callable[[], tuple[Callable[[], Coroutine[Any, Any, int]], str]]) -> NoReturn:
    """Build a service from validated settings and run it to its exit code.

    ``build`` returns the coroutine function that serves, and what to say if
    the system refuses it (a port in use, a file that cannot be written).  A
    ``ValueError`` from ``build`` is a usage error (exit 2); an ``OSError``
    while serving, or Redis refusing the login or the database
    (:class:`RedisRefused`, naming ``--redis-url`` and its variable), is one
    line (exit 1); none prints a traceback.
    """
    try:
        serve, failure = build()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    # What exists now (modules, classes, settings) lives as long as the
    # process: out of the collector's sight, full collections stop walking
    # it again and again.
    gc.freeze()
    # Young-generation collections every 700 container allocations ran in
    # the middle of each batch (the consumer's read reply alone is two lists
    # per entry) and walked lists that were all still alive; every 10,000
    # they run far less often over a similar live set, a few percent of the
    # consumer's instructions per record (valgrind --tool=callgrind over
    # python -m bench.consumer).  Cycles still go, a little later.
    gc.set_threshold(10_000, 10, 10)
    try:
        code = asyncio.run(serve())
    except StartError as exc:
        raise click.ClickException(str(exc)) from exc
    except RedisRefused as exc:
        raise click.ClickException(exc.naming(option_naming("redis_url"))) from None
    except OSError as exc:
        detail = exc.strerror or str(exc)
        if exc.filename:
            detail = f"{detail}: {exc.filename}"
        raise click.ClickException(f"{failure}: {detail}") from exc
    sys.exit(code)


def option_naming(name: str) -> str:
    """How the running command's option ``name`` is given: ``(--redis-url, LOGRELAY_CATCH_REDIS_URL)``.

    For error messages about a value the user chose; "" outside a click
    command, or where the command has no such option.
    """
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return ""
    for param in ctx.command.params:
        if isinstance(param, click.Option) and param.name == name:
            if isinstance(param.envvar, str):
                envvar: str | None = param.envvar
            elif ctx.auto_envvar_prefix and param.allow_from_autoenv:
                envvar = f"{ctx.auto_envvar_prefix}_{name.upper()}"
            else:
                envvar = None
            long_names = [opt for opt in param.opts if opt.startswith("--")] or param.opts
            return f"({', '.join([long_names[0], *([envvar] if envvar else [])])})"
    return ""
