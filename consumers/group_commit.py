"""Group commit: batches written to the file while the ones before are fsynced, acknowledged once durable.

A file consumer's batch goes through three steps: its lines are written
(:meth:`FileSink.write`: readers see them at once), a sync makes them durable
and moves the checkpoint past them (:meth:`FileSink.sync`), then its entries
are acknowledged in Redis.  Waiting for the sync before writing the next
batch put the disk's flush, a millisecond usually and tens at worst, into
every line's latency.  Here a syncer task runs beside the writes: each sync
covers every batch written before it began (several at a time when the disk
is slow), and the entries of those batches go out in one XACK.  Syncs start
at most once per ``sync_interval`` while writes keep coming (at 50k records/s
a sync took ~80 entries; pacing them saved a fifth of the consumer's CPU); at once
when half of ``max_unsynced`` waits or someone waits in :meth:`drained`.
Lines never wait for that: only their acknowledgement does.

What stays as it was: writes in stream order, one at a time; nothing
acknowledged before the checkpoint covers it (a crash leaves it pending, and
recovery cuts the file back to the checkpoint, so it is written once); the
file cut back to the last whole batch when a write fails.  What is bounded:
the entries written and not yet synced (``max_unsynced``), which a power loss
makes the consumer read again, and which are kept in memory so that a failed
fsync can write them again.

Rotation and reopening are steps between two writes (:meth:`maintain`, also
run before each write): with no write running, the sink syncs and checkpoints
what was written, then moves to the new file (:meth:`FileSink.rotate`,
:meth:`FileSink.reopen`); the batches that sync covered are acknowledged as
after any sync.  A batch is never split between two files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from consumers.checkpoint import NO_PRODUCERS, Checkpoint
from consumers.file_sink import FileSink
from consumers.rotation import RotationPolicy, segment_name
from relay.common.counters import ConsumerStats
from relay.common.metrics import ConsumerMetrics

__all__ = ["GroupCommit", "RenderedBatch"]

#: Seconds between two checks that PATH is still the file being written.
IDENTITY_CHECK_SECONDS = 1.0

log = logging.getLogger("logrelay.consumer")


class RenderedBatch(NamedTuple):
    """One batch, rendered: the lines to append and what to acknowledge."""

    data: bytes
    lines: int
    dead: list[tuple[bytes, dict[bytes, bytes], str]]
    #: Whether some entry is not already in the file (then the checkpoint moves to last_id).
    has_new: bool
    #: The ids of every entry of the batch, as RESP bulk strings (an XACK's arguments), and how many.
    ack_ids: bytes
    ack_count: int
    #: The batch's last entry (the checkpoint's last_id moves to it; acknowledged once a sync after its write ends).
    last_id: bytes
    #: Of each producer whose records it rendered, the last record number (for the checkpoint).
    producers: Mapping[str, int] = NO_PRODUCERS

    @property
    def last_new(self) -> bytes | None:
        """The last entry not already in the file (None: all were): the last entry, once one is new."""
        return self.last_id if self.has_new else None


class GroupCommit:
    """Writes rendered batches to ``sink`` in order; a syncer task makes them durable and acknowledges them.

    ``sync_interval``: least seconds between the starts of two syncs, unless
    one is urgent (see the module's docstring).  ``write_on_loop``: write on
    the event loop's thread (a ``pwrite`` into the page cache), not in a
    worker; only where syncs keep the dirty pages few (``--fsync batch``) and
    no other work shares the loop, since a write the kernel holds (dirty-page
    throttling) holds the loop meanwhile.  ``acknowledge(ids, count)``
    sends one XACK (retrying as the caller sees fit); ``pause(seconds, what)``
    waits before a retry of a failed write or sync, and raises to give up (a
    stop was requested).  Whatever ends the syncer is raised to the next
    :meth:`write` or :meth:`drained`.
    """

    def __init__(
        self,
        sink: FileSink,
        *,
        max_unsynced: int,
        sync_interval: float = 0.0,
        acknowledge: Callable[[bytes, int], Coroutine[Any, Any, None]],
        pause: Callable[[float, str], Awaitable[None]],
        stats: ConsumerStats,
        metrics: ConsumerMetrics | None = None,
        write_on_loop: bool = False,
        rotation: RotationPolicy | None = None,
        on_rotated: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sink = sink
        self.write_on_loop = write_on_loop
        self.max_unsynced = max_unsynced
        self.sync_interval = sync_interval
        self._acknowledge = acknowledge
        self._pause = pause
        self.stats = stats
        # Latencies observed per batch written and per sync, never per line.
        metrics = metrics or ConsumerMetrics()
        self._sync_seconds = metrics.sync_seconds
        self._write_seconds = metrics.write_seconds
        # Written, not yet covered by a sync, in stream order.
        self._unsynced: deque[RenderedBatch] = deque()
        self._unsynced_entries = 0
        # Batches counted in write order: appended to _unsynced (their write
        # done), taken from it (acknowledged), and known durable (covered by a
        # sync that began after their write).  By order, not by stream id:
        # after a Redis failover the ids of new entries may be below those of
        # entries written before.
        self._appended = self._popped = self._durable = 0
        self._file_lock = asyncio.Lock()  # one write, or one rewrite after a failed sync, at a time
        self._progress = asyncio.Condition()  # notified after each sync, and when the syncer ends
        self._sync_wanted = asyncio.Event()
        self._sync_urgent = asyncio.Event()  # sync without waiting for the interval
        self._syncer: asyncio.Task[None] | None = None
        self._acking: asyncio.Task[None] | None = None
        self._failing_since: float | None = None
        #: The error of the file operation failing now (disk full, I/O error); None while writes succeed.
        self.write_failure: OSError | None = None
        #: Whether the syncer holds a sync back for ``sync_interval`` (for tests and metrics: no clock needed).
        self.waiting_for_interval = False
        self.rotation = rotation
        self.on_rotated = on_rotated or (lambda: None)
        self.clock = clock
        self._reopen_wanted = False
        self._identity_checked = time.monotonic()

    def request_reopen(self) -> None:
        """Open PATH anew before the next write (SIGHUP: logrotate renamed the file)."""
        self._reopen_wanted = True

    async def maintain(self) -> None:
        """Reopen or rotate the file now if asked or due (between batches; a write running is waited for)."""
        if self._reopen_wanted or self._rotation_due() or self._renamed_away():
            async with self._file_lock:
                await self._maintain_locked()

    def _renamed_away(self) -> bool:
        """PATH renamed or removed without a SIGHUP (checked once a second): then reopen, as a SIGHUP would.

        Otherwise the consumer would go on writing into the renamed file, which
        logrotate's next run compresses and removes.
        """
        now = time.monotonic()
        if now - self._identity_checked < IDENTITY_CHECK_SECONDS:
            return False
        self._identity_checked = now
        if self.sink.is_current():
            return False
        log.warning("%s was renamed or removed without a SIGHUP: opening it anew", self.sink.path)
        self._reopen_wanted = True
        return True

    def _rotation_due(self) -> bool:
        return self.rotation is not None and self.rotation.due(self.sink.written.offset, self.clock())

    async def _maintain_locked(self) -> None:
        """Reopen or rotate, the file lock held (no write running)."""
        sink = self.sink
        if self._reopen_wanted or self._rotation_due():
            # What was written is made durable first, through the path that writes
            # it again if an fsync fails (the rotation's own sync then has nothing to do).
            await self._sync_locked()
        if self._reopen_wanted:
            try:
                reopened = await asyncio.to_thread(sink.reopen)
            except OSError as exc:
                log.error("cannot reopen %s (%s); trying again with the next batch", sink.path, exc)
                await self._pause(1.0, str(sink.path))
                return
            self._reopen_wanted = False
            if reopened is None:
                log.info("reopen: %s is still the file being written; nothing to do", sink.path)
                return
            log.info("reopened %s (an outside rotation): continuing at byte %d", sink.path, reopened.offset)
            if self.rotation is not None:
                self.rotation.reopened(self.clock())
            self.stats.reopens += 1
        elif self._rotation_due():
            assert self.rotation is not None
            now = self.clock()
            segment = _free_segment_path(sink.path, now)
            try:
                await asyncio.to_thread(sink.rotate, segment)
            except OSError as exc:
                # Writing goes on in the current file; the rotation is tried again before the next write.
                log.error("cannot rotate %s to %s (%s); trying again with the next batch", sink.path, segment, exc)
                await self._pause(1.0, str(sink.path))
                return
            self.rotation.rotated(now)
            self.stats.rotations += 1
            log.info("rotated %s to %s", sink.path.name, segment.name)
            self.on_rotated()
        else:
            return
        # The rotation's or reopen's sync covered what was written: acknowledge it.
        self._sync_wanted.set()
        async with self._progress:
            self._progress.notify_all()

    async def write(self, batch: RenderedBatch) -> None:
        """Write the batch's lines after the previous batch's; return once readers can see them.

        Waits first while ``max_unsynced`` entries are written and not yet
        synced.  A failing write (disk full) is retried until it succeeds.
        """
        await self._until(lambda: self._unsynced_entries < self.max_unsynced)
        sink = self.sink
        async with self._file_lock:
            if self._reopen_wanted or self._rotation_due() or self._renamed_away():
                await self._maintain_locked()
            last_new = batch.last_new
            if last_new is not None:
                data = batch.data
                started = time.monotonic()
                if self.write_on_loop:
                    # The hop to a worker and back (GIL hand-offs, two futex
                    # wakes) cost more than the write itself (python -m
                    # bench.suite, the consumer's CPU per record).
                    try:
                        sink.write(data, last_new, batch.producers)
                    except OSError as exc:
                        await self._retrying_io(lambda: sink.write(data, last_new, batch.producers), exc)
                else:
                    await self._retrying_io(lambda: sink.write(data, last_new, batch.producers))
                self._write_seconds.observe(time.monotonic() - started)
                self.stats.lines_written += batch.lines
                self.stats.bytes_written += len(data)
            self._unsynced.append(batch)
            self._appended += 1
            self._unsynced_entries += batch.ack_count
        self._sync_wanted.set()
        if self._unsynced_entries >= self.max_unsynced // 2:
            self._sync_urgent.set()  # before writes have to wait for it
        self.stats.batches += 1
        if self._syncer is None:
            self._syncer = asyncio.create_task(self._sync_forever())

    async def drained(self) -> None:
        """Wait until every written batch is durable and its acknowledgement answered."""
        self._sync_urgent.set()
        await self._until(lambda: not self._unsynced)
        await self._acknowledged()

    async def close(self) -> None:
        """Cancel the syncer and the acknowledgement in flight (what they had not done stays pending)."""
        for task in (self._syncer, self._acking):
            if task is not None:
                task.cancel()
                # Their failure, if any, reached write() or drained() already,
                # or the consumer is ending for another reason.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._syncer = self._acking = None

    async def _until(self, predicate: Callable[[], bool]) -> None:
        """Wait for the syncer to make ``predicate`` true; raise what ended the syncer, if it ended first."""

        def ended() -> bool:
            return self._syncer is not None and self._syncer.done()

        async with self._progress:
            await self._progress.wait_for(lambda: predicate() or ended())
        if not predicate():
            assert self._syncer is not None
            self._syncer.result()  # raises what ended it
            raise RuntimeError("the syncer ended")

    async def _sync_forever(self) -> None:
        """Sync what was written, then acknowledge the batches the new checkpoint covers; repeat."""
        last_start = -self.sync_interval
        try:
            while True:
                await self._sync_wanted.wait()
                delay = last_start + self.sync_interval - time.monotonic()
                if delay > 0 and not self._sync_urgent.is_set():
                    # Batches written meanwhile join this sync (write() makes it urgent at half the bound).
                    self.waiting_for_interval = True
                    try:
                        # asyncio.timeout, not wait_for: in 3.11 wait_for swallows a
                        # cancellation (close()) that arrives as the event is set.
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(delay):
                                await self._sync_urgent.wait()
                    finally:
                        self.waiting_for_interval = False
                self._sync_wanted.clear()
                self._sync_urgent.clear()
                if not self._unsynced:
                    continue
                last_start = time.monotonic()
                await self._sync()
                if self._popped < self._durable:
                    # The lines and the checkpoint are down: an XACK lost with
                    # a crash only leaves entries pending that the checkpoint
                    # covers (acknowledged on restart, never written twice).
                    # One XACK for what one sync covered; one in flight.
                    await self._acknowledged()
                    # From here to the new XACK's task, no await: drained()
                    # never sees a batch gone from _unsynced whose XACK is
                    # not in _acking.
                    covered: list[RenderedBatch] = []
                    while self._unsynced and self._popped < self._durable:
                        covered.append(self._unsynced.popleft())
                        self._popped += 1
                        self._unsynced_entries -= covered[-1].ack_count
                    ids = b"".join(batch.ack_ids for batch in covered)
                    count = sum(b.ack_count for b in covered)
                    self._acking = asyncio.create_task(self._acknowledge_sync(ids, count, last_start))
                    self.stats.syncs += 1
                if self._unsynced:
                    self._sync_wanted.set()  # written while this sync ran
                async with self._progress:
                    self._progress.notify_all()
        finally:
            async with self._progress:
                self._progress.notify_all()  # waiters see that the syncer ended

    async def _acknowledge_sync(self, ids: bytes, count: int, started: float) -> None:
        """XACK what a sync covered; observe the sync's whole latency (fsync, checkpoint, XACK) once answered."""
        await self._acknowledge(ids, count)
        self._sync_seconds.observe(time.monotonic() - started)

    async def _sync(self) -> None:
        """Sync what was written; the batches written before it began are then durable."""
        upto = self._appended  # their writes are done: the sync covers them
        try:
            await asyncio.to_thread(self.sink.sync)
        except OSError as exc:
            failure = exc
        else:
            self._durable = max(self._durable, upto)
            return
        async with self._file_lock:
            await self._sync_locked(failure)

    async def _sync_locked(self, failure: OSError | None = None) -> None:
        """Sync everything written, the file lock held (no write running)."""
        upto = self._appended
        if failure is None:
            try:
                await asyncio.to_thread(self.sink.sync)
            except OSError as exc:
                failure = exc
        if failure is not None:
            await self._rewrite_and_sync(failure)
        self._durable = max(self._durable, upto)

    async def _rewrite_and_sync(self, failure: OSError) -> Checkpoint:
        """After a failed sync, the file lock held: write every batch not covered again, then sync.

        The kernel may have dropped the pages whose write-back failed, and a
        second fsync would not say so: the batches come again from memory.
        """
        # A sync before (a rotation's) may have covered (and moved) the first ones already.
        batches = list(self._unsynced)[max(0, self._durable - self._popped) :]
        sink = self.sink

        def rewrite_and_sync() -> Checkpoint:
            sink.rewind()
            for batch in batches:
                if batch.last_new is not None:
                    sink.write(batch.data, batch.last_new, batch.producers)
            return sink.sync()

        checkpoint: Checkpoint = await self._retrying_io(rewrite_and_sync, failure)
        return checkpoint

    async def _acknowledged(self) -> None:
        """Wait for the acknowledgement in flight, if any (raising what it raised)."""
        if self._acking is not None:
            acking, self._acking = self._acking, None
            await acking

    async def _retrying_io(self, operation: Callable[[], Any], failure: OSError | None = None) -> Any:
        """Run a file operation in a thread until it succeeds (disk full, I/O errors); return its result.

        ``failure``: the operation already failed once, so wait before the
        first try.  Failing writes and syncs are one outage: logged once when
        it starts and once when it ends.
        """
        while True:
            if failure is not None:
                self.write_failure = failure
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.error("cannot write %s (%s); nothing acknowledged, retrying", self.sink.path, failure)
                await self._pause(1.0, str(self.sink.path))
            try:
                result = await asyncio.to_thread(operation)
            except OSError as exc:
                failure = exc
                continue
            if self._failing_since is not None:
                log.warning("writing %s again after %.1fs", self.sink.path, time.monotonic() - self._failing_since)
                self._failing_since = None
            self.write_failure = None
            return result


def _free_segment_path(path: Path, now: float) -> Path:
    """``PATH.<UTC time>``, or with ``-N`` if that name (plain or compressed) is taken."""
    index = 0
    while True:
        candidate = path.with_name(segment_name(path.name, now, index))
        if not candidate.exists() and not candidate.with_name(candidate.name + ".gz").exists():
            return candidate
        index += 1
