"""The bounded buffer between connections and Redis, and the write path.

Connections hand decoded records to :class:`StreamPublisher` synchronously
(:meth:`~StreamPublisher.add_records`); one task drains the buffer into Redis
in batches, so records keep the order in which they were added (and
therefore each connection's order).

Each batch is written by one call of a Lua script (:data:`PUBLISH_SCRIPT`):
up to ``batch_max_records`` XADDs, applied atomically.  The task keeps up to
``window`` batches in flight on one connection, sent ahead of their replies:
what is buffered goes out at once, and each reply read makes room for one
more batch behind those still in flight.  So Redis always has work queued
while the catcher reads and decodes, and the publishing task, which only
runs between turns of the event loop, is never what Redis waits for.  The
script keeps such a pipeline in order (see :mod:`relay.publish.script`) and
makes retries harmless: every batch carries this process's producer id and
a sequence number; the script stores the last applied number and skips a
batch it has already applied.  So when replies are lost (timeout,
connection reset, Redis stalled) everything in flight is simply sent again.

A partial batch lingers for more records (``linger``), and how the buffer
is cut into batches is :mod:`relay.publish.batching`'s.  When reading stops for the
buffer's sake (ahead of Redis, or Redis away) is :mod:`relay.publish.read_gate`'s.

Nothing that was added is dropped while the process runs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from itertools import repeat
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from relay.common.backoff import retry_delay
from relay.common.counters import CatcherStats
from relay.common.metrics import CatcherMetrics
from relay.common.redis_protocol import CommandPipeline
from relay.common.stream import SCHEMA_VERSION, StreamKeys
from relay.publish.batching import ENTRY_OVERHEAD, Batch, BatchCutter
from relay.publish.packing import pack_publish
from relay.publish.read_gate import FlowControl, ReadGate
from relay.publish.replica_wait import ReplicaWait, Wait
from relay.publish.script import (
    PUBLISH_SCRIPT,
    STREAM_FULL,
    BatchResult,
    DeadLetterEntry,
    Entry,
    FullPolicy,
    Identity,
    RecordEntry,
    parse_result,
)

__all__ = ["DEFAULT_WINDOW", "PUBLISH_SCRIPT", "SCHEMA_VERSION", "StreamPublisher"]

log = logging.getLogger("logrelay.publisher")

_new_tuple: Final = tuple.__new__

#: Batches sent before waiting for their replies.
DEFAULT_WINDOW: Final = 16


class StreamPublisher:
    """Buffers entries and writes them to Redis in order, exactly once.

    ``add_records``/``add_dead_letter`` never block and never drop; they may
    push the buffer past its limits by the entries of one socket read, which
    is why pausing happens at a limit and resuming at half of it.
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
        window: int = DEFAULT_WINDOW,
        linger: float = 0.0,
        stats: CatcherStats | None = None,
        metrics: CatcherMetrics | None = None,
        flow: FlowControl | None = None,
        max_stream_length: int = 0,
        full_policy: FullPolicy = "block",
        dead_letter_max_length: int = 0,
        pipeline: Callable[[Redis], CommandPipeline] = CommandPipeline,
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
    ) -> None:
        self._redis = redis
        # Where batches go and replies come from: a seam for tests to inject faults.
        self._pipeline = pipeline
        self._keys = keys
        self.catcher_id = catcher_id
        # Unique per process lifetime even if two catchers share an id; the
        # token also names this process's records (their seq field).
        self.producer_token = secrets.token_hex(8)
        self.producer_id = f"{catcher_id}:{self.producer_token}"
        self._producer_key = keys.producer(self.producer_id)
        self._buffer: deque[Entry] = deque()
        self._buffered_bytes = 0
        # Of those, the entries of the batches in flight to Redis.
        self._in_flight_bytes = 0
        self._batches = BatchCutter(
            max_records=batch_max_records, max_bytes=batch_max_bytes, window=window, linger=linger
        )
        # run() waits out a linger: only a batch's worth of entries wakes it early.
        self._lingering = False
        self.stats = stats or CatcherStats()
        # Observed once per confirmed batch (about 0.6 µs each), never per record.
        metrics = metrics or CatcherMetrics()
        self._publish_seconds = metrics.publish_seconds
        self._record_latency_seconds = metrics.record_latency_seconds
        self._gate = ReadGate(
            buffer_bytes=buffer_bytes, read_ahead=window * batch_max_bytes, flow=flow, stats=self.stats
        )
        self._script_sha: str | None = None
        self._wakeup = asyncio.Event()
        self._closing = False
        self._outage_since: float | None = None
        self._last_outage_log = 0.0
        # The last batch held records back: the stream is at max_stream_length (policy block).
        self._stream_full = False
        self._last_failure: BaseException | None = None
        self.max_stream_length = max_stream_length
        self.full_policy: FullPolicy = full_policy
        # The dead-letter stream is trimmed to about this many entries by each batch that adds one (0: never).
        self.dead_letter_max_length = dead_letter_max_length
        self._last_dead_trim_log = -60.0
        self._last_shed_log = -60.0
        self._full_attempts = 0
        # A batch is confirmed once that many replicas acknowledged it (WAIT);
        # a WAIT holds the connection at most wait_timeout seconds.
        self._replicas = ReplicaWait(wait_replicas, wait_timeout, self.stats)
        # The batches in flight of the running _publish (for awaiting_replicas),
        # and how many of them held records back (no new batch goes behind those).
        self._in_flight: deque[Batch] = deque()
        self._holding = 0

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
        """Whether reading is stopped, for either limit (:mod:`relay.publish.read_gate`)."""
        return self._gate.paused

    @property
    def full(self) -> bool:
        """Whether reading is stopped because the buffer is full (not only read-ahead)."""
        return self._gate.full

    @property
    def lingering(self) -> bool:
        """Whether a partial batch, nothing else to send, waits out its linger for more records."""
        return self._lingering

    @property
    def wait_replicas(self) -> int:
        """Replicas that must acknowledge a batch before it leaves the buffer (0: none, no WAIT)."""
        return self._replicas.replicas

    @property
    def replicas_acknowledging(self) -> int | None:
        """How many replicas the last WAIT counted (None: no WAIT yet)."""
        return self._replicas.acknowledging

    @property
    def awaiting_replicas(self) -> int:
        """Entries the master applied that fewer replicas than ``wait_replicas`` acknowledged so far."""
        if not self.wait_replicas:
            return 0
        return sum(len(batch.entries) for batch in self._in_flight if batch.applied)

    @property
    def in_outage(self) -> bool:
        """True from a failed publish until the next one succeeds."""
        return self._outage_since is not None

    @property
    def stream_full(self) -> bool:
        """True from a batch held back by a full stream (policy block) until a batch goes through whole."""
        return self._stream_full

    @property
    def last_failure(self) -> str:
        """The last failed publish's error, as ``Type: message`` ("" if none yet)."""
        exc = self._last_failure
        return "" if exc is None else f"{type(exc).__name__}: {exc}"

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
        if not self._wakeup.is_set() and (not self._lingering or self._batch_ready()):
            self._wakeup.set()
        self._check_limits()

    def _batch_ready(self) -> bool:
        # While run() lingers nothing is in flight: the whole buffer is unsent.
        return self._batches.is_full(len(self._buffer), self._buffered_bytes)

    # -- flow control ----------------------------------------------------------

    def _check_limits(self) -> None:
        buffered = self._buffered_bytes
        self._gate.check(
            buffered, buffered - self._in_flight_bytes, outage=self._outage_since is not None, records=len(self._buffer)
        )

    def _check_resume(self) -> None:
        buffered = self._buffered_bytes
        self._gate.check_resume(buffered, buffered - self._in_flight_bytes, outage=self._outage_since is not None)

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
            wait = 0.0 if self._closing else self._batches.linger_left()
            if wait > 0 and not self._batch_ready():
                await self._linger_for(wait)
            held = await self._publish()
            self._stream_full = bool(held)
            if held:
                # Stream at its maximum (policy block): records were not
                # written.  They go back to the head of the buffer, in order,
                # for later batches, after a pause.
                self._buffer.extendleft(reversed(held))
                self._buffered_bytes += sum(len(entry.record) + ENTRY_OVERHEAD for entry in held)
                self._note_failure(RedisError(f"{STREAM_FULL} ({len(held)} records held)"))
                await asyncio.sleep(retry_delay(self._full_attempts))
                self._full_attempts += 1
            else:
                self._full_attempts = 0
            self.stats.buffered = len(self._buffer)
            self._check_limits()
            self._check_resume()

    async def _linger_for(self, seconds: float) -> None:
        """Wait ``seconds`` for more entries, or less if a batch's worth arrives or :meth:`close` is called."""
        self._lingering = True
        self._wakeup.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()
        except TimeoutError:
            pass
        finally:
            self._lingering = False

    def close(self) -> None:
        """Ask :meth:`run` to return once everything buffered is published."""
        self._closing = True
        self._wakeup.set()

    async def _publish(self) -> list[RecordEntry]:
        """Publish from the buffer, up to ``window`` batches in flight on one connection; return the records held.

        Returns once nothing is in flight and the buffer is empty, or once a
        batch held records back (full stream, policy block): then no new
        batch goes out, and the held records are that batch's held tail and
        every record of the batches in flight behind it (see
        :data:`PUBLISH_SCRIPT`), in order.  A batch leaves the buffer once
        Redis confirms it, in order: once the script applied it, or, with
        ``wait_replicas``, once a ``WAIT`` sent behind it on the same
        connection says that many replicas have it.  A failed batch makes the
        script refuse the ones behind it: their replies are read, and all are
        sent again.  When the connection fails, which ran is unknown: all in
        flight, applied or not, are sent again (the script skips what the
        master it reaches has applied, on a new master after a failover too).
        """
        in_flight: deque[Batch] = deque()
        self._in_flight, self._holding = in_flight, 0
        # The replies to read, in order: a batch's, or a WAIT's (the last batch it covers).
        expected: deque[Batch | Wait] = deque()
        covered: Batch | None = None  # the last batch a WAIT was sent behind
        wait_pending = False  # a WAIT's reply is among those expected (one at a time: it holds the connection)
        held: list[RecordEntry] = []
        pipe = self._pipeline(self._redis)
        attempt = 0
        resend = False
        sent_once = False
        try:
            while True:
                # No new batch behind records held back: they go first, later.
                holding = held or self._holding
                fresh = [] if holding or resend else self._more_batches(in_flight, hold_partial=sent_once)
                sent_once = True
                in_flight.extend(fresh)
                if not in_flight:
                    return held
                outgoing = fresh
                if resend:
                    outgoing = list(in_flight)
                    expected.clear()
                    covered, wait_pending = None, False
                    for index, batch in enumerate(outgoing):
                        batch.applied = False
                        # The batch before the first was confirmed: the first
                        # needs no turn (a new master may not know that one);
                        # each later one applies only right behind the one
                        # before, and is held whole if that one held records.
                        if batch.pipelined != (index > 0):
                            batch.pipelined = index > 0
                            batch.packed = None
                wait = self.wait_replicas > 0 and in_flight[-1] is not covered and not wait_pending
                try:
                    if self._script_sha is None:
                        self._script_sha = await self._redis.script_load(PUBLISH_SCRIPT)
                        for batch in in_flight:
                            batch.packed = None
                    if outgoing or wait:
                        self._in_flight_bytes = sum(batch.size for batch in in_flight)
                        # Redis has them: reading may go on while it works.
                        self._check_resume()
                        sent_at = time.monotonic()
                        packed = []
                        for batch in outgoing:
                            batch.sent_at = sent_at
                            packed.append(self._packed(batch))
                        expected.extend(outgoing)
                        if wait:
                            covered = in_flight[-1]
                            packed.append(self._replicas.command)
                            expected.append(Wait(covered))
                            wait_pending = True
                        await pipe.send(packed)
                        resend = False
                    if not expected:
                        raise RuntimeError("publisher: batches in flight and no reply to read")
                    reply = await pipe.reply()
                except (RedisError, OSError) as exc:
                    resend = True
                    self._note_failure(exc)
                    await asyncio.sleep(retry_delay(attempt))
                    attempt += 1
                    continue
                item = expected.popleft()
                if type(item) is Wait:
                    wait_pending = False
                    confirmed = self._replicas.confirmed(item, reply, in_flight)
                    if isinstance(confirmed, BaseException):
                        failure = confirmed
                    else:
                        failure = None
                        for _ in range(confirmed):
                            self._release(in_flight, held)
                        if item.covers in in_flight:
                            covered = None  # too few replicas: WAIT again
                else:
                    assert type(item) is Batch
                    failure = self._applied(item, reply)
                    if failure is None and not self.wait_replicas:
                        self._release(in_flight, held)
                if failure is None:
                    attempt = 0
                    if self._gate.paused:
                        self._check_resume()
                    continue
                resend = True
                # The batches behind it were refused by the script: read
                # their replies, then send everything again.
                try:
                    for _ in range(len(expected)):
                        await pipe.reply()
                except (RedisError, OSError):
                    await pipe.reset()
                expected.clear()
                wait_pending = False
                if isinstance(failure, NoScriptError):
                    # Redis restarted or SCRIPT FLUSH: load it again, no backoff.
                    self._script_sha = None
                    continue
                self._note_failure(failure)
                await asyncio.sleep(retry_delay(attempt))
                attempt += 1
        finally:
            self._in_flight_bytes = 0
            if expected:
                await pipe.reset()  # cancelled with replies pending
            else:
                await pipe.close()

    def _more_batches(self, in_flight: deque[Batch], *, hold_partial: bool) -> list[Batch]:
        """The next batches (:meth:`BatchCutter.take`); a partial one is never held on :meth:`_publish`'s
        first call, which run() makes once the linger is over or a batch is full, nor once closing."""
        return self._batches.take(self._buffer, in_flight, hold_partial=hold_partial and not self._closing)

    def _packed(self, batch: Batch) -> bytes:
        if batch.packed is None:
            assert self._script_sha is not None
            keys = [self._keys.records, self._keys.dead_letters, self._producer_key]
            batch.packed = pack_publish(
                self._script_sha,
                keys,
                batch.entries,
                batch.seq,
                self.catcher_id,
                self.max_stream_length,
                self.full_policy,
                pipelined=batch.pipelined,
                identity=Identity(self.producer_token, batch.first_record),
                dead_max_length=self.dead_letter_max_length,
            )
        return batch.packed

    def _applied(self, batch: Batch, reply: object) -> BaseException | None:
        """Note a batch the script applied (and the records it held back); or say why it was not applied."""
        if isinstance(reply, ResponseError):
            return reply
        try:
            result = parse_result(reply)
        except ValueError as exc:
            return RedisError(str(exc))
        if result.out_of_turn:
            # Only behind a batch that failed, and that one is read first.
            return RedisError(f"batch {batch.seq} refused: the batch before it was not applied")
        batch.applied = True
        kept = self._note_success(batch, result)
        # Its last reply's word, not added to an earlier one's: a batch sent
        # again after its reply (waiting for replicas) is answered again.
        self._holding -= bool(batch.held)
        batch.held = [entry for entry in batch.entries if type(entry) is RecordEntry][-kept:] if kept else []
        self._holding += bool(batch.held)
        return None

    def _release(self, in_flight: deque[Batch], held: list[RecordEntry]) -> None:
        """The first batch in flight is confirmed: it leaves the buffer, its held records (if any) go to ``held``."""
        batch = in_flight.popleft()
        held.extend(batch.held)
        self._holding -= bool(batch.held)
        self._in_flight_bytes -= batch.size
        for _ in range(len(batch.entries)):
            self._buffer.popleft()
        self._buffered_bytes -= batch.size
        self._publish_seconds.observe(time.monotonic() - batch.sent_at)
        self._observe_record_latency(batch)

    def _observe_record_latency(self, batch: Batch) -> None:
        """Receive → confirmed, of the batch's oldest entry (the one that waited longest), once per batch.

        Its receive time is the entry's ``received`` field, the wall clock's
        seconds (:mod:`relay.net.protocol`): a clock stepped back could make
        it negative, and a caller may pass something else (then nothing is observed).
        """
        try:
            received = float(batch.entries[0][-1])
        except ValueError:
            return
        self._record_latency_seconds.observe(max(0.0, time.time() - received))

    def _note_success(self, batch: Batch, result: BatchResult) -> int:
        """Count a confirmed batch; return how many of its records it held."""
        stats = self.stats
        if result.duplicate:
            # A previous attempt of this batch reached Redis but its reply
            # was lost: it was applied then, so it is done now.
            stats.batches_deduplicated += 1
            log.info("batch %d was already applied before its reply was lost; not re-adding", batch.seq)
        stats.batches_published += 1
        dead = sum(1 for e in batch.entries if type(e) is DeadLetterEntry)
        stats.dead_letters_published += dead
        if result.dead_trimmed:
            self._note_dead_trimmed(result.dead_trimmed)
        stats.records_published += len(batch.entries) - dead - result.shed - result.held
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

    def _note_dead_trimmed(self, trimmed: int) -> None:
        """Count the oldest dead letters a batch's trim removed; say so at most every 30 s."""
        self.stats.dead_letters_trimmed += trimmed
        now = time.monotonic()
        if now - self._last_dead_trim_log >= 30:
            self._last_dead_trim_log = now
            log.warning(
                "dead-letter stream %r is at --dead-letter-max-length (about %d): removed its oldest letters "
                "(%d so far); look at them with `logrelay dead-letters list`",
                self._keys.dead_letters,
                self.dead_letter_max_length,
                self.stats.dead_letters_trimmed,
            )

    def _note_failure(self, exc: BaseException) -> None:
        self.stats.redis_errors += 1
        self._last_failure = exc
        # Another failure since the stream was found full: that one is the news now.
        self._stream_full = STREAM_FULL in str(exc)
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = self._last_outage_log = now
            if STREAM_FULL in str(exc):
                log.error(
                    "stream %r is at its maximum length (%d; consumers behind?): holding records, "
                    "buffering up to %.0f MiB, then pushing back on senders (policy block)",
                    self._keys.records,
                    self.max_stream_length,
                    self._gate.high_water / 2**20,
                )
            else:
                log.error(
                    "cannot publish to Redis (%s: %s); buffering up to %.0f MiB and retrying",
                    type(exc).__name__,
                    exc,
                    self._gate.high_water / 2**20,
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
        # Redis away: the read-ahead limit gives way to the buffer's.
        self._check_resume()
