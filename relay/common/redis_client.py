"""How to reach Redis (:class:`RedisSettings`) and the clients built from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["DEFAULT_REDIS_URL", "RedisSettings", "create_redis"]

DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """How to reach Redis.  Build with :meth:`from_url`."""

    url: str = DEFAULT_REDIS_URL
    socket_timeout: float = 5.0
    connect_timeout: float = 2.0

    @classmethod
    def from_url(cls, url: str, **options: float) -> RedisSettings:
        """Validate a ``redis://``, ``rediss://`` or ``unix://`` URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} in {url!r}")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError(f"no host in Redis URL {url!r}")
        return cls(url=url, **options)

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for logs."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()


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
