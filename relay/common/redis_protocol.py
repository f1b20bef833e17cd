"""Redis's wire format (RESP) for the hot paths: commands packed once, sent as is.

redis-py packs every command it sends and passes every reply through a
response callback.  The publisher packs a whole batch into one EVALSHA
(:func:`relay.publish.packing.pack_publish`) and sends several at a time with
:func:`send_pipeline`; the file consumer reads its batches with a command
packed once for all (:func:`send_packed`).  Both skip redis-py's packing and
callbacks, which cost more per entry than the parsing itself (``python -m
bench.consumer``, ``python -m bench.ingest``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    InvalidResponse,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = [
    "CommandPipeline",
    "bulk_string",
    "failover_outage",
    "is_failover_error",
    "pack_command",
    "send_packed",
    "send_pipeline",
]

T = TypeVar("T")

# Most bytes taken from the connection's stream per read of reply_bytes.
_READ_SIZE = 1 << 20


#: Error replies of a server that is not (or not yet, or no longer) the master a write must go to: a
#: demoted master (READONLY), a cluster node that does not serve the slot (MOVED, ASK), a cluster in
#: failover (CLUSTERDOWN, TRYAGAIN; MASTERDOWN is a ClusterDownError), a node loading its data (LOADING).
_FAILOVER_ERRORS: tuple[type[RedisError], ...] = (
    ReadOnlyError,
    AskError,
    ClusterDownError,
    TryAgainError,
    BusyLoadingError,
)
#: What a master that turns into a replica answers the clients it had blocked (XREADGROUP BLOCK ...),
#: and what one configured with min-replicas-to-write answers once cut off from its replicas (it may
#: be a master the Sentinels or the cluster have replaced).
_FAILOVER_REPLIES = ("UNBLOCKED force unblock from blocking operation, instance state changed", "NOREPLICAS ")


def is_failover_error(error: BaseException) -> bool:
    """Whether ``error`` is a server's answer that it is not the master to talk to now (``_FAILOVER_ERRORS``, ...).

    Such an answer says nothing about the command: the same command sent to
    the current master is the retry.  The connection must not be used again,
    since it goes on reaching the wrong node.
    """
    if isinstance(error, _FAILOVER_ERRORS):
        return True
    return isinstance(error, ResponseError) and str(error).startswith(_FAILOVER_REPLIES)


def failover_outage(error: RedisError, where: str) -> ConnectionError:
    """The ``ConnectionError`` a failover error (:func:`is_failover_error`) reaches callers as: an outage to retry."""
    code = getattr(error, "status_code", None) or type(error).__name__
    outage = ConnectionError(f"{where} is not the master now (failover): {code} {error}")
    outage.__cause__ = error
    return outage


def bulk_string(value: bytes | str | int) -> bytes:
    """One RESP bulk string (str as UTF-8, int as its digits)."""
    if not isinstance(value, bytes):
        value = str(value).encode()
    return b"$%d\r\n%b\r\n" % (len(value), value)


def pack_command(*args: bytes | str | int) -> bytes:
    """A command as redis-py's ``pack_command`` packs it."""
    return b"*%d\r\n" % len(args) + b"".join(bulk_string(arg) for arg in args)


async def send_packed(redis: Redis, packed: bytes) -> object:
    """Send one packed command on a pooled connection; return the reply as the parser reads it (no callback).

    Retries are the caller's.  An error reply is raised (``ResponseError``)
    and leaves the connection usable; but a failover error reply
    (:func:`is_failover_error`) is raised as a ``ConnectionError`` and drops it.
    """
    (reply,) = await send_pipeline(redis, packed, 1)
    if isinstance(reply, ResponseError):
        raise reply
    return reply


async def send_pipeline(redis: Redis, packed: bytes | list[bytes], count: int) -> list[object]:
    """Send ``count`` packed commands in one write on one pooled connection; return their replies, in order.

    ``packed``: the commands' bytes, whole or in parts (written as they are,
    not joined first).  An error reply is returned in its place as a
    ``ResponseError`` (so the replies after it are still read).  A connection
    that failed mid-way is dropped, never reused with replies pending; the
    caller cannot know which of the commands ran.
    """
    pipe = CommandPipeline(redis)
    try:
        await pipe.send(packed)
        return [await pipe.reply() for _ in range(count)]
    finally:
        await pipe.close()


class CommandPipeline:
    """Commands sent ahead of their replies on one pooled connection, the replies read back one at a time, in order.

    An error reply comes back as a ``ResponseError`` value: the replies
    behind it stay readable.  After a failed send or read the connection is
    dropped (:meth:`reset`), since which commands ran is unknown; the next
    :meth:`send` takes another.  :meth:`close` gives the connection back to
    the pool; only call it with no reply pending.

    A failover error reply (:func:`is_failover_error`: READONLY, MOVED,
    LOADING, ...) is an outage, not a reply: :meth:`reply` raises it as a
    ``ConnectionError`` and drops the connection, and :meth:`error_reply`
    returns it so and has :meth:`close` drop the connection, so that the
    next connection finds the current master.
    """

    def __init__(self, redis: Redis) -> None:
        self._pool = redis.connection_pool
        self._connection: Any = None
        # An error reply said this connection reaches a node that is not the master: close() drops it.
        self._stale = False

    async def send(self, packed: bytes | list[bytes]) -> None:
        if self._connection is None:
            self._connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await self._connection.send_packed_command(packed, check_health=False)
        except BaseException:
            await self.reset()
            raise

    async def reply(self) -> object:
        """The next reply, as the parser reads it (no callback); an error reply as a ``ResponseError``."""
        if self._connection is None:
            raise ConnectionError("no command in flight: the connection was reset")
        try:
            reply: object = await self._connection.read_response()
        except ResponseError as exc:
            if not is_failover_error(exc):
                return exc
            outage = failover_outage(exc, _where(self._connection))
            await self.reset()
            raise outage from exc
        except BaseException:
            await self.reset()
            raise
        return reply

    def reads_bytes(self) -> bool:
        """Whether :meth:`reply_bytes` can read this connection (a command sent, no reply pending but its own).

        It can where redis-py reads through an asyncio stream with hiredis,
        without decoding replies to str, and nothing is left in hiredis's
        buffer: the next bytes on the stream are the reply's.  Not through
        fakeredis or redis-py's Python parsers.
        """
        connection = self._connection
        parser = getattr(connection, "_parser", None)
        buffered = getattr(parser, "_reader", None)
        encoder = getattr(connection, "encoder", None)
        return (
            isinstance(getattr(connection, "_reader", None), asyncio.StreamReader)
            and encoder is not None
            and not encoder.decode_responses
            and type(parser).__name__ == "_AsyncHiredisParser"
            and getattr(parser, "_stream", None) is connection._reader
            and buffered is not None
            and not buffered.has_data()
        )

    async def reply_bytes(self, feed: Callable[[bytes], T | None]) -> T:
        """The next reply, read as bytes: fed chunk by chunk to ``feed`` until it returns a result, which is returned.

        Only where :meth:`reads_bytes`.  As redis-py's reads: bounded by the
        connection's socket timeout (``redis.exceptions.TimeoutError``), a
        closed or reset connection is a ``ConnectionError``, and what
        ``feed`` refuses (``ValueError``) an ``InvalidResponse``; each drops
        the connection, since what is left on it is unknown.
        """
        connection = self._connection
        if connection is None:
            raise ConnectionError("no command in flight: the connection was reset")
        stream: asyncio.StreamReader = connection._reader
        try:
            async with asyncio.timeout(connection.socket_timeout):
                while True:
                    chunk = await stream.read(_READ_SIZE)
                    if not chunk:
                        raise ConnectionError("Connection closed by server.")
                    found = feed(chunk)
                    if found is not None:
                        return found
        except TimeoutError as exc:  # before OSError, its base class
            await self.reset()
            raise RedisTimeoutError(f"Timeout reading from {_where(connection)}") from exc
        except OSError as exc:
            await self.reset()
            raise ConnectionError(f"Error while reading from {_where(connection)}: {exc}") from exc
        except ValueError as exc:
            await self.reset()
            raise InvalidResponse(str(exc)) from exc
        except BaseException:
            await self.reset()
            raise

    def error_reply(self, message: bytes | str) -> RedisError:
        """The exception redis-py makes of an error reply's message (``NOGROUP ...`` and the like).

        A failover error comes back as the ``ConnectionError`` of
        :func:`failover_outage`, and :meth:`close` will drop the connection.
        """
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        error: RedisError = self._connection._parser.parse_error(message)
        if is_failover_error(error):
            self._stale = True
            return failover_outage(error, _where(self._connection))
        return error

    async def reset(self) -> None:
        """Drop the connection: replies still pending on it are lost with it."""
        self._stale = False
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.disconnect()
            finally:
                await self._pool.release(connection)

    async def close(self) -> None:
        if self._stale:
            await self.reset()
            return
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._pool.release(connection)


def _where(connection: Any) -> str:
    """The connection's address, as redis-py words it in its errors."""
    describe = getattr(connection, "_host_error", None)
    return str(describe()) if callable(describe) else "Redis"
