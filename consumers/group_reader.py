"""Reading a stream through a Redis consumer group, in stream order.

:class:`GroupReader` first takes over every entry still pending in the group
(delivered to some consumer, never acknowledged: a consumer that died), in
stream-id order, then reads new entries.  Its caller holds the output's
writer lock, so no other member of the group is live while it claims.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import InvalidResponse, RedisError, ResponseError

from consumers.read_replies import ReplyReader, bulk_ids, check_items
from relay.common.redis_protocol import CommandPipeline, bulk_string, pack_command, send_packed

__all__ = ["Entry", "GroupReader", "Item", "PendingBatch"]

log = logging.getLogger("logrelay.reader")

Entry = tuple[bytes, dict[bytes, bytes]]
#: One entry of a read reply as the parser gives it: ``[id, [field, value, ...]]``.
Item = list[Any]
#: A read reply's entries: hiredis's list, or a ``ReplyEntries`` (the reply's
#: bytes, an item built as hiredis would when asked for; see
#: :data:`consumers.read_replies.ReplyReader`).
Items = Sequence[Item]


@dataclass(slots=True)
class PendingBatch:
    """Entries taken over from the pending list, with how often each was delivered."""

    entries: list[Entry]
    deliveries: dict[bytes, int]
    deleted: list[bytes]


class GroupReader:
    def __init__(self, redis: Redis, stream: str, group: str, consumer: str, *, batch_size: int, block_ms: int) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.batch_size = batch_size
        self.block_ms = block_ms
        self._recheck_own_pending = False
        # The two reads of every batch, packed once: new entries (waiting up
        # to block_ms for them), and our own pending ones.
        read = ("XREADGROUP", "GROUP", group, consumer, "COUNT", batch_size)
        self._read_new = pack_command(*read, "BLOCK", block_ms, "STREAMS", stream, ">")
        self._read_own_pending = pack_command(*read, "STREAMS", stream, "0")
        self._ack_head = b"".join(bulk_string(part) for part in ("XACK", stream, group))

    async def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; the group starts at the stream's beginning.

        Also when the group is created again while the file holds entries
        (after a failover to a replica that had not received the group, or a
        Redis restart without persistence): the new master may number its new
        entries below those the file holds, so no position is safe but the
        beginning; what the file holds is skipped by its record identity (see
        :mod:`consumers.batch_renderer`).
        """
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            log.info("created consumer group %r on stream %r", self.group, self.stream)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def pending(self) -> AsyncIterator[PendingBatch]:
        """Claim every pending entry of the group to this consumer, in id order, batch by batch."""
        cursor = b"0-0"
        while True:
            reply = await self.redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=0,
                start_id=cursor,
                count=self.batch_size,
            )
            cursor, entries = reply[0], reply[1]
            deleted = list(reply[2]) if len(reply) > 2 else []
            entries = [(entry_id, fields) for entry_id, fields in entries if fields is not None]
            deliveries = await self._delivery_counts(entries)
            if entries or deleted:
                yield PendingBatch(entries, deliveries, deleted)
            if cursor in (b"0-0", "0-0"):
                return

    async def _delivery_counts(self, entries: list[Entry]) -> dict[bytes, int]:
        if not entries:
            return {}
        rows: list[dict[str, Any]] = await self.redis.xpending_range(
            self.stream,
            self.group,
            min=entries[0][0],
            max=entries[-1][0],
            count=len(entries),
            consumername=self.consumer,
        )
        return {row["message_id"]: int(row["times_delivered"]) for row in rows}

    async def new(self) -> Items:
        """Wait up to ``block_ms`` for entries never delivered to the group; return them (maybe none), as read.

        If a read fails, Redis may still have delivered entries to us (the
        reply was lost: timeout, reset, Redis died after its AOF write).
        Those sit in our pending list and a ``>`` read never returns them
        again, so after a failure we first re-read our own pending entries.
        """
        if self._recheck_own_pending:
            items = await self._read(self._read_own_pending)
            trimmed = [item[0] for item in items if item[1] is None]
            if trimmed:
                # Pending but gone from the stream: nothing left to write.
                log.error("%d pending entries were trimmed before being written; acknowledging them", len(trimmed))
                await self.ack(trimmed)
                items = [item for item in items if item[1] is not None]
            if items:
                return items
            self._recheck_own_pending = False
        self._recheck_own_pending = True  # until the read below returns
        # A ">" read delivers entries from the stream itself: none is trimmed.
        new = await self._read_entries(self._read_new)
        self._recheck_own_pending = False
        return new

    async def _read_entries(self, command: bytes) -> Items:
        """:meth:`_read`, the reply's bytes kept as they came where the connection allows.

        hiredis makes two lists and eleven bytes objects of each entry; making
        and freeing them was about a quarter of the consumer's CPU (``python
        -m bench.speedups``).  A ``ReplyEntries`` keeps the entries in the
        reply's buffer, and the renderers read them there.
        """
        if ReplyReader is None:
            return await self._read(command)
        pipe = CommandPipeline(self.redis)
        try:
            await pipe.send(command)
            if not pipe.reads_bytes():
                reply = await pipe.reply()
                if isinstance(reply, ResponseError):
                    raise reply
                return self._entries_of(reply)
            kind, value = await pipe.reply_bytes(ReplyReader().feed)
            if kind == 0:
                entries: Items = value
                return entries
            if kind == 1:
                return []
            if kind == 2:
                raise pipe.error_reply(value)
            # Any other reply (not expected of XREADGROUP): read as redis-py
            # would (reads_bytes() said hiredis is there).
            import hiredis

            parser = hiredis.Reader(protocolError=InvalidResponse, replyError=pipe.error_reply)
            parser.feed(value)
            reply = parser.gets()
            if isinstance(reply, RedisError):  # error_reply's: a ResponseError, or a failover's ConnectionError
                raise reply
            return self._entries_of(reply)
        finally:
            await pipe.close()

    async def _read(self, command: bytes) -> list[Item]:
        # Sent packed and read without redis-py's callback: per entry, the
        # callback cost more than parsing the reply.
        return self._entries_of(await send_packed(self.redis, command))

    @staticmethod
    def _entries_of(reply: Any) -> list[Item]:
        """The entries of a read reply as a parser made it (hiredis), each as Redis sends it, or ``InvalidResponse``.

        A reply of another shape, or an entry holding a type Redis never sends
        there (:func:`~consumers.read_replies.check_items`), is refused as the
        C reader refuses such bytes: before the renderers or the XACK ids see
        it, as a ``RedisError`` the caller's retries handle.
        """
        if not reply:
            return []
        # RESP2 answers a list of [stream, entries]; RESP3 a map.
        if type(reply) is dict and len(reply) == 1:
            items = next(iter(reply.values()))
        elif type(reply) is list and len(reply) == 1 and type(reply[0]) is list and len(reply[0]) == 2:
            items = reply[0][1]
        else:
            raise InvalidResponse(f"malformed reply from Redis: not the entries of one stream: {reply!r:.200}")
        if type(items) is not list:
            raise InvalidResponse(f"malformed reply from Redis: the stream's entries are not an array: {items!r:.200}")
        try:
            check_items(items)
        except ValueError as exc:
            raise InvalidResponse(str(exc)) from None
        return items

    async def ack(self, ids: list[bytes]) -> None:
        await self.ack_bulk(b"".join(bulk_string(entry_id) for entry_id in ids), len(ids))

    async def ack_items(self, items: list[Item]) -> None:
        """Acknowledge the entries of a read reply (their ids packed in C)."""
        await self.ack_bulk(bulk_ids(items), len(items))

    async def ack_bulk(self, ids: bytes, count: int) -> None:
        """XACK ``count`` ids, given as concatenated RESP bulk strings."""
        if count:
            await send_packed(self.redis, b"*%d\r\n%b%b" % (count + 3, self._ack_head, ids))
