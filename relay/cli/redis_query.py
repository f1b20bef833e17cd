"""Commands that ask Redis something and exit (``status``, ...): one client, one line on failure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.common.redis_client import RedisSettings, create_redis

__all__ = ["run_query"]

T = TypeVar("T")


def run_query(settings: RedisSettings, query: Callable[[Redis], Awaitable[T]], *, client_name: str) -> T:
    """Run ``query`` with a client for ``settings``; a Redis failure is a one-line error (exit 1)."""

    async def run() -> T:
        redis = create_redis(settings, client_name=client_name)
        try:
            return await query(redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(run())
    except (RedisError, OSError) as exc:
        detail = str(exc) or type(exc).__name__
        raise click.ClickException(f"cannot read from Redis at {settings.safe_url}: {detail}") from exc
