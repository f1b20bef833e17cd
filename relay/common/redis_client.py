"""How to reach Redis (:class:`RedisSettings`) and the clients built from it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["DEFAULT_REDIS_URL", "RedisSettings", "create_redis", "mask_url", "raise_if_cancelled"]

DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
#: Query parameters of a URL that carry a secret (redis-py reads ``password`` from the query too).
SECRET_PARAMETERS: Final = frozenset({"password", "sentinel_password", "ssl_password"})


def mask_url(url: str) -> str:
    """``url`` with every password in it (``user:***@``, ``?password=***``) masked, for logs and messages."""
    if "://" not in url:
        return url
    parts = original = urlsplit(url)
    if parts.password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(name.lower() in SECRET_PARAMETERS for name, _ in pairs):
        masked = [(name, "***" if name.lower() in SECRET_PARAMETERS else value) for name, value in pairs]
        parts = parts._replace(query=urlencode(masked, safe="*/:"))
    # Untouched when there is nothing to mask (urlsplit/geturl would turn unix:///path into unix:/path).
    return url if parts == original else parts.geturl()


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
        return mask_url(self.url)


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


def raise_if_cancelled() -> None:
    """Raise CancelledError if the current task was asked to stop.

    redis-py (8.2 seen) may answer a command cancelled in flight with its reply,
    or with the error of the connection it dropped for it, instead of raising
    CancelledError: a loop that goes on after a Redis call must call this
    before its next round, or the cancellation is lost and the process's exit
    waits on it for ever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
