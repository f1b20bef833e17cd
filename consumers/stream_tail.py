"""Reading the records stream without a consumer group: the newest entries, then new ones as they come.

:class:`StreamTail` only ever runs XREVRANGE and XREAD: it creates no group,
acknowledges nothing and writes nothing, so a tail never changes what the
consumers are delivered.  What to keep of the entries is
:mod:`consumers.tail_view`'s business.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from consumers.tail_view import Entry, NewestCollector, previous_id
from relay.common.backoff import retry_delay
from relay.common.redis_client import raise_if_cancelled

__all__ = ["EMPTY_STREAM_ID", "NewestScan", "StreamTail"]

#: Where to follow an empty (or absent) stream from: every entry is above it.
EMPTY_STREAM_ID: Final = b"0-0"
#: Entries asked for per XREVRANGE page; a filter that matches few records reads many pages.
_PAGE_SIZE: Final = 1000


@dataclass(frozen=True, slots=True)
class NewestScan:
    """How a scan for the newest entries ended.

    ``newest_id``: the stream's newest entry when the scan began, where a
    follow goes on from (every entry after it is new); ``limit_reached``:
    the scan stopped at its bound with entries left unread.
    """

    newest_id: bytes
    limit_reached: bool


class StreamTail:
    """XREVRANGE pages (newest first) and blocking XREADs of one stream, read-only."""

    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self._key = key

    async def newest_id(self) -> bytes:
        """The id of the stream's newest entry, or :data:`EMPTY_STREAM_ID`."""
        page = _entries(await self._redis.xrevrange(self._key, "+", "-", count=1))
        return page[0][0] if page else EMPTY_STREAM_ID

    async def scan_newest(self, collector: NewestCollector, scan_limit: int) -> NewestScan:
        """Feed ``collector`` pages, newest first, until it is done, the stream ends or ``scan_limit`` entries are read.

        Pages are no larger than the entries still wanted would need without a
        filter (and at least a hundred), so ``-n 5`` on a huge stream reads one
        small page.
        """
        page_size = min(_PAGE_SIZE, max(100, collector.wanted))
        newest: bytes | None = None
        upper: bytes | None = b"+"
        read = 0
        while upper is not None and read < scan_limit:
            count = min(page_size, scan_limit - read)
            page = _entries(await self._redis.xrevrange(self._key, upper, "-", count=count))
            if newest is None:
                newest = page[0][0] if page else EMPTY_STREAM_ID
            read += len(page)
            if collector.add_page(page) or len(page) < count:
                return NewestScan(newest, limit_reached=False)
            upper = previous_id(page[-1][0])
        # Stopped by the bound: were there entries left to read?
        more = upper is not None and bool(await self._redis.xrevrange(self._key, upper, "-", count=1))
        return NewestScan(newest or EMPTY_STREAM_ID, limit_reached=more)

    async def follow(
        self,
        after: bytes,
        *,
        block_ms: int,
        count: int = 1000,
        on_outage: Callable[[RedisError | OSError], None] | None = None,
        on_back: Callable[[bytes], None] | None = None,
    ) -> AsyncIterator[list[Entry]]:
        """Batches of entries newer than ``after``, in stream order, forever (until cancelled).

        Each XREAD goes on from the last id returned, never ``$``, so nothing
        added between two reads is missed.  ``block_ms`` must stay below the
        client's socket timeout: a blocked read is a reply that takes that long.

        Losing Redis (a restart, a failover, the network) does not end the
        follow, as ``tail -F`` outlives a rotation: ``on_outage`` is told once,
        the read is retried with backoff, and ``on_back`` is told the id it
        goes on from.  Any other error (the key is not a stream) ends it.
        """
        last = after
        attempt = 0
        while True:
            try:
                reply: Any = await self._redis.xread({self._key: last}, count=count, block=block_ms)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                raise_if_cancelled()  # a stop (Ctrl-C) that redis-py answered as a dropped connection
                if attempt == 0 and on_outage is not None:
                    on_outage(exc)
                await asyncio.sleep(retry_delay(attempt))
                attempt += 1
                continue
            raise_if_cancelled()
            if attempt:
                attempt = 0
                if on_back is not None:
                    on_back(last)
            for _key, reply_entries in reply or ():
                entries = _entries(reply_entries)
                if entries:
                    last = entries[-1][0]
                    yield entries


def _entries(reply: Any) -> list[Entry]:
    """A range or read reply's entries as redis-py parses them (id, {field: value}), typed.

    The client is made with ``decode_responses=False``: ids, fields and values are bytes.
    """
    return [(entry_id, fields or {}) for entry_id, fields in reply or ()]
