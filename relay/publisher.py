"""The bounded buffer between connections and Redis, and the write path.

Connections hand decoded records to :class:`StreamPublisher` synchronously
(:meth:`~StreamPublisher.add_records`); one task drains the buffer into Redis
in batches, one batch in flight at a time, so records keep the order in which
they were added (and therefore each connection's order).

Each batch is written by one call of a Lua script (:data:`PUBLISH_SCRIPT`):
one round trip for up to ``batch_max_records`` XADDs, applied atomically.
The script also makes retries harmless.  Every batch carries this process's
producer id and a sequence number; the script stores the last applied number
and skips a batch it has already applied.  So when a reply is lost (timeout,
connection reset, Redis stalled) the batch is simply sent again.

When Redis is slow or away, the buffer grows up to ``buffer_bytes``; at that
point the publisher asks its :class:`FlowControl` to stop reading sockets,
and to start again once the buffer is half empty.  TCP then pushes back on
senders.  Nothing that was added is dropped while the process runs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import secrets
import time
from collections import deque
from itertools import repeat
from typing import Final, Protocol

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from relay.publishscript import (
    PUBLISH_SCRIPT,
    SCHEMA_VERSION,
    STREAM_FULL,
    DeadLetterEntry,
    Entry,
    FullPolicy,
    RecordEntry,
    pack_publish,
    parse_result,
)
from relay.resp import send_packed
from relay.settings import StreamKeys
from relay.stats import CatcherStats

__all__ = ["PUBLISH_SCRIPT", "SCHEMA_VERSION", "FlowControl", "StreamPublisher"]

log = logging.getLogger("logrelay.publisher")

_new_tuple: Final = tuple.__new__

# Rough per-entry memory besides its payload (tuple, str objects, deque slot).
ENTRY_OVERHEAD: Final = 120


class FlowControl(Protocol):
    """What the publisher needs from the server to push back on senders."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class _NoFlowControl:
    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class StreamPublisher:
    """Buffers entries and writes them to Redis in order, exactly once.

    ``add_records``/``add_dead_letter`` never block and never drop; they may
    push the buffer past ``buffer_bytes`` by the entries of one socket read,
    which is why pausing happens at the limit and resuming at half of it.
    """

    def __init__(
        self,
        redis: Redis,
        keys: StreamKeys,
        *,
        catcher_id: str,
        buffer_bytes: int,
        batch_max_records: int = 1000,
        batch_max_bytes: int = 1024 * 1024,
        stats: CatcherStats | None = None,
        flow: FlowControl | None = None,
        max_stream_length: int = 0,
        full_policy: FullPolicy = "block",
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.catcher_id = catcher_id
        # Unique per process lifetime even if two catchers share an id.
        self.producer_id = f"{catcher_id}:{secrets.token_hex(6)}"
        self._producer_key = keys.producer(self.producer_id)
        self._buffer: deque[Entry] = deque()
        self._buffered_bytes = 0
        self._high_water = buffer_bytes
        self._low_water = buffer_bytes // 2
        self._batch_max_records = batch_max_records
        self._batch_max_bytes = batch_max_bytes
        self.stats = stats or CatcherStats()
        self.flow: FlowControl = flow or _NoFlowControl()
        self._paused = False
        self._seq = 0
        self._script_sha: str | None = None
        self._wakeup = asyncio.Event()
        self._closing = False
        self._outage_since: float | None = None
        self._last_outage_log = 0.0
        self.max_stream_length = max_stream_length
        self.full_policy: FullPolicy = full_policy
        self._last_shed_log = -60.0
        self._full_attempts = 0
        self._last_pause_log = -60.0

    # -- the producer side (called from protocol callbacks) -----------------

    @property
    def buffered(self) -> int:
        """Entries accepted and not yet confirmed by Redis."""
        return len(self._buffer)

    @property
    def buffered_bytes(self) -> int:
        return self._buffered_bytes

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def in_outage(self) -> bool:
        """True from a failed publish until the next one succeeds."""
        return self._outage_since is not None

    def add_record(self, record: bytes, client: str, received: str) -> None:
        self.add_records([record], client, received)

    def add_records(self, records: list[bytes], client: str, received: str) -> None:
        """Buffer records (one socket read's, say) in their order, all from ``client``, received at ``received``."""
        if not records:
            return
        # One entry per record, built in C (map over zip): this runs per record.
        self._buffer.extend(map(_new_tuple, repeat(RecordEntry), zip(records, repeat(client), repeat(received))))
        self.stats.records_received += len(records)
        self._added(sum(map(len, records)) + ENTRY_OVERHEAD * len(records))

    def add_dead_letter(self, raw: bytes, reason: str, client: str, received: str) -> None:
        self._buffer.append(DeadLetterEntry(raw, reason, client, received))
        self._added(len(raw) + len(reason) + ENTRY_OVERHEAD)

    def _added(self, size: int) -> None:
        self._buffered_bytes += size
        self.stats.buffered = len(self._buffer)
        if not self._wakeup.is_set():
            self._wakeup.set()
        if not self._paused and self._buffered_bytes >= self._high_water:
            self._pause()

    def _pause(self) -> None:
        self._paused = True
        self.stats.backpressure_pauses += 1
        now = time.monotonic()
        # Under sustained load a small buffer fills and drains many times a
        # second: say it once per half minute, the count is in the stats.
        if now - self._last_pause_log >= 30:
            self._last_pause_log = now
            log.warning(
                "buffer full (%d records, %.1f MiB): pausing reads until Redis catches up",
                len(self._buffer),
                self._buffered_bytes / 2**20,
            )
        self.flow.pause_reading()

    def _resume(self) -> None:
        self._paused = False
        log.debug("buffer drained to %d records: reading again", len(self._buffer))
        self.flow.resume_reading()

    # -- the consumer side (one task) ---------------------------------------

    async def run(self) -> None:
        """Publish until :meth:`close` is called and the buffer is empty."""
        while True:
            if not self._buffer:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch, size = self._take_batch()
            self._seq += 1
            held = await self._publish(batch, self._seq)
            for _ in range(len(batch)):
                self._buffer.popleft()
            self._buffered_bytes -= size
            if held:
                # Stream at its maximum (policy block): the batch's last
                # records were not written.  They go back to the head of the
                # buffer, in order, for a later batch, after a pause.
                kept = [entry for entry in batch if type(entry) is RecordEntry][-held:]
                self._buffer.extendleft(reversed(kept))
                self._buffered_bytes += sum(len(entry.record) + ENTRY_OVERHEAD for entry in kept)
                self._note_failure(RedisError(f"{STREAM_FULL} ({held} records held)"))
                await asyncio.sleep(_backoff(self._full_attempts))
                self._full_attempts += 1
            else:
                self._full_attempts = 0
            self.stats.buffered = len(self._buffer)
            if self._paused and self._buffered_bytes <= self._low_water:
                self._resume()

    def close(self) -> None:
        """Ask :meth:`run` to return once everything buffered is published."""
        self._closing = True
        self._wakeup.set()

    def _take_batch(self) -> tuple[list[Entry], int]:
        batch: list[Entry] = []
        size = 0
        for entry in itertools.islice(self._buffer, self._batch_max_records):
            entry_size = len(entry[0]) + ENTRY_OVERHEAD
            if isinstance(entry, DeadLetterEntry):
                entry_size += len(entry.reason)
            # Always take at least one entry, however large.
            if batch and size + entry_size > self._batch_max_bytes:
                break
            batch.append(entry)
            size += entry_size
        return batch, size

    async def _publish(self, batch: list[Entry], seq: int) -> int:
        """Write one batch, retrying with backoff until Redis confirms it; return how many records it held back."""
        keys = [self._keys.records, self._keys.dead_letters, self._producer_key]
        attempt = 0
        packed: bytes | None = None
        while True:
            try:
                if self._script_sha is None:
                    self._script_sha = await self._redis.script_load(PUBLISH_SCRIPT)
                    packed = None
                if packed is None:
                    packed = pack_publish(
                        self._script_sha, keys, batch, seq, self.catcher_id, self.max_stream_length, self.full_policy
                    )
                reply = await self._call_script(packed)
            except NoScriptError:
                # Redis restarted or SCRIPT FLUSH: load it again, no backoff.
                self._script_sha = None
                continue
            except (RedisError, OSError) as exc:
                self._note_failure(exc)
                await asyncio.sleep(_backoff(attempt))
                attempt += 1
                continue
            return self._note_success(batch, reply)

    async def _call_script(self, packed: bytes) -> object:
        """The packed EVALSHA, sent as is (packing it is per batch, measured: README, "Performance")."""
        return await send_packed(self._redis, packed)

    def _note_success(self, batch: list[Entry], reply: object) -> int:
        stats = self.stats
        result = parse_result(reply)
        if result.duplicate:
            # A previous attempt of this batch reached Redis but its reply
            # was lost: it was applied then, so it is done now.
            stats.batches_deduplicated += 1
            log.info("batch %d was already applied before its reply was lost; not re-adding", self._seq)
        stats.batches_published += 1
        dead = sum(1 for e in batch if type(e) is DeadLetterEntry)
        stats.dead_letters_published += dead
        stats.records_published += len(batch) - dead - result.shed - result.held
        if result.shed:
            stats.records_shed += result.shed
            now = time.monotonic()
            if now - self._last_shed_log >= 30:
                self._last_shed_log = now
                log.error(
                    "stream %r is at its maximum length (%d): shedding new records (policy shed; %d so far)",
                    self._keys.records,
                    self.max_stream_length,
                    stats.records_shed,
                )
        if self._outage_since is not None and not result.held:
            log.warning(
                "Redis is back after %.1fs; publishing %d buffered records",
                time.monotonic() - self._outage_since,
                len(self._buffer),
            )
            self._outage_since = None
        return result.held

    def _note_failure(self, exc: BaseException) -> None:
        self.stats.redis_errors += 1
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = self._last_outage_log = now
            if STREAM_FULL in str(exc):
                log.error(
                    "stream %r is at its maximum length (%d; consumers behind?): holding records, "
                    "buffering up to %.0f MiB, then pushing back on senders (policy block)",
                    self._keys.records,
                    self.max_stream_length,
                    self._high_water / 2**20,
                )
            else:
                log.error(
                    "cannot publish to Redis (%s: %s); buffering up to %.0f MiB and retrying",
                    type(exc).__name__,
                    exc,
                    self._high_water / 2**20,
                )
        elif now - self._last_outage_log >= 30:
            # A reminder, not a line per record or per retry.
            self._last_outage_log = now
            log.error(
                "Redis still unavailable after %.0fs (%s); %d records buffered",
                now - self._outage_since,
                exc,
                len(self._buffer),
            )


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: ~50 ms doubling up to 2 s."""
    delay: float = min(2.0, 0.05 * 2.0 ** min(attempt, 10))
    return random.uniform(0.5, 1.0) * delay
