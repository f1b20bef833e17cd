"""Commands that ask Redis something and exit (``status``, ...): one client, one line on failure."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
import redis.exceptions
from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.cli.environment import warn_stray_variables
from relay.common.redis_client import RedisSettings, create_redis
from relay.common.redis_refusal import RedisRefused
from relay.common.signals import option_naming

__all__ = ["redis_failure", "run_query"]

T = TypeVar("T")


def redis_failure(settings: RedisSettings, exc: RedisError | OSError) -> str:
    """One line saying why Redis failed us: ``cannot reach Redis at URL: Connection refused``.

    A refused login or database names the option and variable the URL came
    from (``Redis refused the password for URL (--redis-url, LOGRELAY_STATUS_REDIS_URL): ...``).
    """
    url = settings.safe_url
    refused = RedisRefused.of(exc, settings.url)
    if refused is not None:
        return refused.naming(option_naming("redis_url"))
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError) and cause.errno:
            reason = os.strerror(cause.errno)
        elif isinstance(cause, TimeoutError):
            reason = "timed out"
        else:
            reason = str(exc)
        return f"cannot reach Redis at {url}: {reason}"
    if isinstance(exc, OSError):
        return f"cannot reach Redis at {url}: {exc.strerror or exc}"
    return f"Redis at {url} refused a command: {' '.join(str(exc).split())}"


def run_query(settings: RedisSettings, query: Callable[[Redis], Awaitable[T]], *, client_name: str, slot_key: str) -> T:
    """Run ``query`` with a client for ``settings``; a Redis failure is a one-line error (exit 1).

    ``slot_key``: the stream's key (a Redis Cluster client is pinned to the master of its hash slot).
    First, a ``Warning:`` line on stderr for each ``LOGRELAY_*`` variable
    that sets none of the command's options (these commands do not log).
    """
    warn_stray_variables(lambda warning: click.echo(f"Warning: {warning}", err=True))

    async def run() -> T:
        redis = create_redis(settings, client_name=client_name, slot_key=slot_key)
        try:
            return await query(redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(run())
    except (RedisError, OSError) as exc:
        raise click.ClickException(redis_failure(settings, exc)) from None
