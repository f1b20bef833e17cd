"""Redis refusing us for a reason no retry will fix: a wrong password, no password, a database it does not have.

Redis unreachable (connection refused, a timeout) is an outage: the
processes buffer and retry until it comes back.  Redis *answering* and
refusing the login or the database is a configuration mistake: retrying
would hold records for ever and still publish none.  :func:`verify_login`
tells the two apart once at start, so that a command exits with one line
instead of accepting records it cannot publish; :meth:`RedisRefused.of`
classifies any error a Redis call raised.
"""

from __future__ import annotations

import asyncio
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from redis.asyncio import Redis
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    AuthorizationError,
    NoPermissionError,
    RedisError,
    ResponseError,
)

from relay.common.redis_client import RedisSettings, mask_url

__all__ = ["RedisRefused", "verify_login"]

#: How Redis says a SELECT named a database beyond its ``databases`` setting.
NO_SUCH_DATABASE: Final = "DB index is out of range"


class RedisRefused(Exception):
    """Redis answered and refused us: ``problem`` (what is wrong) with ``url`` (password masked), Redis's ``detail``.

    ``str()`` is the one line a command prints; :meth:`naming` adds how the
    URL was given (the option and its environment variable).
    """

    def __init__(self, problem: str, url: str, detail: str) -> None:
        super().__init__(problem, url, detail)
        self.problem = problem
        self.url = url
        self.detail = detail

    def __str__(self) -> str:
        return self.naming("")

    def naming(self, how_given: str) -> str:
        """The one line, with ``how_given`` (``(--redis-url, LOGRELAY_CATCH_REDIS_URL)``) after the URL."""
        given = f" {how_given}" if how_given else ""
        return f"{self.problem} for {self.url}{given}: {self.detail}"

    @classmethod
    def of(cls, exc: BaseException, url: str) -> RedisRefused | None:
        """The refusal ``exc`` is (raised by a call to the Redis at ``url``), or None: an outage, or another error."""
        if not isinstance(exc, RedisError):
            return None
        detail = " ".join(str(exc).split()) or type(exc).__name__
        shown = mask_url(url)
        if isinstance(exc, AuthenticationError | AuthenticationWrongNumberOfArgsError):
            if _gives_password(url):
                return cls("Redis refused the password", shown, detail)
            return cls("Redis requires a password and the URL gives none", shown, detail)
        if isinstance(exc, AuthorizationError):
            return cls("Redis refused the login", shown, detail)
        if isinstance(exc, NoPermissionError):
            return cls("Redis refused a command logrelay needs to the URL's user (ACL)", shown, detail)
        if isinstance(exc, ResponseError) and NO_SUCH_DATABASE in detail:
            return cls("Redis has no such database (see its 'databases' setting)", shown, detail)
        return None


def _gives_password(url: str) -> bool:
    """Whether ``url`` carries a password (``user:password@`` or ``?password=``)."""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            return True
    except ValueError:
        return False
    return any(name.lower() == "password" for name, _ in parse_qsl(parts.query))


async def verify_login(redis: Redis, settings: RedisSettings) -> None:
    """Connect and PING once, the login and the database included; raise :class:`RedisRefused` if Redis refuses.

    Anything else (no answer, a refused connection, a timeout) returns: an
    outage, which the caller's own retries handle as before.
    """
    try:
        # asyncio.timeout, not wait_for: 3.11's wait_for may swallow a cancellation arriving with the reply.
        async with asyncio.timeout(settings.connect_timeout + settings.socket_timeout):
            await redis.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        refused = RedisRefused.of(exc, settings.url)
        if refused is not None:
            raise refused from None
