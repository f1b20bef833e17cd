"""Building Redis clients from :class:`relay.settings.RedisSettings`."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from relay.settings import RedisSettings

__all__ = ["create_redis"]


def create_redis(settings: RedisSettings, *, client_name: str) -> Redis:
    """Return an asyncio client for ``settings.url``.

    redis-py's own retries are switched off: the callers own retry, backoff
    and outage logging, and must see every failure to keep their guarantees
    (the publisher relies on its batch sequence numbers, not on redis-py, to
    make a retry harmless).
    """
    return Redis.from_url(
        settings.url,
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=settings.connect_timeout,
        retry=Retry(NoBackoff(), 0),
        client_name=client_name,
        decode_responses=False,
    )
