"""Redis's wire format (RESP) for the hot paths: commands packed once, sent as is.

redis-py packs every command it sends and passes every reply through a
response callback.  The publisher packs a whole batch into one EVALSHA
(:func:`relay.publishscript.pack_publish`), and the file consumer reads its
batches with a command packed once for all; both send with
:func:`send_packed`, which skips packing and callbacks (measured: README,
"Performance").
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError

__all__ = ["bulk_string", "pack_command", "send_packed"]


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

    Retries are the caller's.  A connection that failed mid-command is
    dropped, never reused with a reply pending; an error reply
    (``ResponseError``) leaves it usable.
    """
    pool = redis.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await connection.send_packed_command(packed, check_health=False)
        return await connection.read_response()
    except ResponseError:
        raise
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)
