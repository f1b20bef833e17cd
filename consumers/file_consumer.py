"""``logrelay consume file``: the stream, through a consumer group, into one file.

Per batch: render each entry (:mod:`consumers.formatting`), write the lines
(:class:`consumers.file_sink.FileSink`), and once a sync has made them durable
and moved the checkpoint past them, XACK.  Syncs run beside the writes (group
commit): a batch's lines reach the file while the batch before is fsynced.
Entries that cannot be rendered go to the dead-letter stream; so do entries
delivered more than ``max_deliveries`` times without being written (a record
that crashes the consumer must not stop the file forever).

SIGTERM/SIGINT (as arq does it): stop reading new entries, finish and
acknowledge the batch in hand, release the file, exit 0.  SIGHUP (as nginx
and rsyslog do it): finish the batch in hand, sync, checkpoint, and open the
file anew (after logrotate renamed it).  With ``--rotate-size`` or
``--rotate-interval`` the consumer rotates the file itself
(:mod:`consumers.rotation`), and a :class:`~consumers.segments.SegmentKeeper`
compresses and prunes the segments in a thread.

``--format`` is checked before the first record (:mod:`consumers.format_check`);
a file its checkpoint says was written with another format is rotated on
start, so that no file mixes two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from consumers.batch_renderer import BatchRenderer
from consumers.checkpoint import Checkpoint
from consumers.file_sink import FileSink, FsyncPolicy
from consumers.format_check import check_format, render_sample
from consumers.formatting import build_formatter
from consumers.group_commit import GroupCommit, RenderedBatch, free_segment_path
from consumers.group_reader import Entry, GroupReader, Items
from consumers.group_watch import GroupWatch
from consumers.rotation import RotationPolicy
from consumers.segments import SegmentKeeper
from consumers.settings import FileConsumerSettings
from consumers.stale_groups import StaleGroupWatch
from consumers.trimmer import StreamTrimmer
from relay.common import speedups, stream
from relay.common.backoff import retry_delay
from relay.common.counters import ConsumerStats
from relay.common.health import HealthServer, Readiness
from relay.common.heartbeat import Heartbeat
from relay.common.metrics import ConsumerMetrics, new_registry
from relay.common.redis_client import RedisSettings, create_redis
from relay.common.redis_refusal import RedisRefused, verify_login
from relay.common.signals import StartError, serve_with_signals

__all__ = ["FileConsumer"]

log = logging.getLogger("logrelay.consumer")
#: What the start found doubtful in --format (its own logger: the consumer's first line stays "writing ...").
format_log = logging.getLogger("logrelay.format")

#: Entries written and waiting for a sync, in batches of the configured size,
#: before the next write waits: a stalled fsync holds up the file only after
#: this many batches at full load (more, smaller ones at moderate rates).
UNSYNCED_BATCHES = 8


class _GivingUp(Exception):
    """A stop was requested while an operation kept failing."""


class FileConsumer:
    def __init__(
        self,
        settings: FileConsumerSettings,
        redis: Redis | None = None,
        *,
        shares_loop: bool = False,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """``shares_loop``: other work runs on this event loop (``logrelay up``'s catcher).

        ``registry``: where the metrics go (``logrelay up`` shares one); None: a registry of its own.
        """
        self.settings = settings
        # XREADGROUP blocks server-side for block_ms: the socket must wait longer.
        redis_settings = settings.redis
        timeout = max(redis_settings.socket_timeout, settings.block_ms / 1000 + 5)
        self._redis = redis or create_redis(
            RedisSettings(redis_settings.url, timeout, redis_settings.connect_timeout),
            client_name=f"logrelay-consume:{settings.consumer}",
            slot_key=settings.keys.records,
        )
        self._owns_redis = redis is None
        if settings.rotation.rotates and settings.output.is_symlink():
            # A rotation renames PATH: the link would move, the file it points to stay.
            raise ValueError(f"--output {settings.output} is a symbolic link: with rotation, give the file itself")
        self.sink = FileSink(settings.output, settings.fsync, line_format=settings.format)
        for warning in check_format(settings.format, settings.placeholder):
            format_log.warning(warning)
        self.formatter = build_formatter(settings.format, settings.placeholder)
        # Before the first record: a format that fails here would send every record to the dead letters.
        render_sample(self.formatter)
        self.reader = GroupReader(
            self._redis,
            settings.keys.records,
            settings.group,
            settings.consumer,
            batch_size=settings.batch_size,
            block_ms=settings.block_ms,
        )
        self.stats = ConsumerStats()
        self._last_dead_trim_log = -60.0
        # What readiness goes by, with the watch's redis_ok; the watch also feeds the lag and pending gauges.
        self.holds_file = False
        self.watch = GroupWatch(self._redis, settings.keys.records, settings.group, where=redis_settings.safe_url)
        self.stale_groups = StaleGroupWatch(
            self._redis, settings.keys.records, settings.stale_group_after, own_group=settings.group
        )
        self.metrics_registry = registry or new_registry()
        self.metrics = ConsumerMetrics(
            self.metrics_registry,
            self.stats,
            lambda: self.readiness().ready,
            lambda: self.watch.info,
            lambda: self.stale_groups.stale,
        )
        self.health = (
            HealthServer(settings.health_listen, self.readiness, self.metrics_registry)
            if settings.health_listen
            else None
        )
        self._watching: asyncio.Task[None] | None = None
        self._watching_groups: asyncio.Task[None] | None = None
        self.trimmer = StreamTrimmer(self._redis, settings.keys.records)
        self._last_trim = time.monotonic()
        self._trimming: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.renderer = BatchRenderer(
            self.formatter, lambda: self.sink.checkpoint, self.stats, max_deliveries=settings.max_deliveries
        )
        self.commits = GroupCommit(
            self.sink,
            max_unsynced=UNSYNCED_BATCHES * settings.batch_size,
            sync_interval=settings.sync_interval_ms / 1000,
            acknowledge=self._acknowledge,
            pause=self._pause_or_give_up,
            stats=self.stats,
            metrics=self.metrics,
            # On the loop's own thread where syncs keep the dirty pages few
            # and nothing else waits on this loop (see GroupCommit).
            write_on_loop=settings.fsync is FsyncPolicy.BATCH and not shares_loop,
        )
        self.keeper = SegmentKeeper(
            settings.output,
            settings.rotation,
            protected=lambda: (self.sink.checkpoint.device, self.sink.checkpoint.inode),
            stats=self.stats,
        )
        self._until_caught_up = False
        self._outage_since: float | None = None
        # The failing operation's error, while _outage_since is set.
        self._outage_error: str | None = None
        self.caught_up = asyncio.Event()
        self._cleanup: asyncio.Task[None] | None = None
        self.heartbeat = Heartbeat(
            self._redis, settings.keys, "consumer", settings.consumer, self._describe, rates=("lines_written",)
        )

    def _describe(self) -> dict[str, object]:
        """What this consumer's heartbeat says (``logrelay status``)."""
        return {
            "output": str(self.settings.output),
            "group": self.settings.group,
            "writing": self.holds_file,
            "counters": self.stats.as_dict(),
        }

    def request_reopen(self) -> None:
        """Open the file anew after the batch in hand (SIGHUP, after an outside rotation)."""
        log.info("reopen requested: %s is opened anew after the batch in hand", self.settings.output)
        self.commits.request_reopen()

    def request_stop(self, *, when_caught_up: bool = False) -> None:
        """Stop after the batch in hand; with ``when_caught_up``, only once the stream is drained."""
        if when_caught_up:
            self._until_caught_up = True
        else:
            log.info("stop requested: finishing the batch in hand")
        self._stop.set()

    def readiness(self) -> Readiness:
        """Ready while this consumer holds the file, Redis answers its commands and the file takes its writes;
        else why not (/readyz's 503), naming the cause: a Redis that does not answer, one that answers with
        errors, or the file's error."""
        if self._stop.is_set():
            return Readiness(False, "stopping")
        if not self.holds_file:
            return Readiness(False, f"standing by for the lock of {self.settings.output}")
        if not self.watch.redis_ok:
            return Readiness(False, "Redis unreachable")
        if self._outage_error is not None:
            return Readiness(False, f"Redis commands failing ({self._outage_error})")
        failure = self.commits.write_failure
        if failure is not None:
            return Readiness(False, f"cannot write {self.settings.output} ({failure.strerror or failure})")
        return Readiness(True, "ready")

    @property
    def _stopping(self) -> bool:
        return self._stop.is_set() and (not self._until_caught_up or self.caught_up.is_set())

    async def serve(self) -> int:
        """Run with SIGTERM/SIGINT handlers until stopped; return the exit code."""
        return await serve_with_signals(self.run, self.request_stop)

    def _handle_sighup(self) -> bool:
        """Reopen on SIGHUP while running (its default would end the process); whether it was installed."""
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request_reopen)
        except (RuntimeError, ValueError):  # not the main thread: the embedding program owns signals
            return False
        return True

    async def run(self) -> int:
        """Write the stream to the file until stopped; return the exit code.

        Raises :class:`RedisRefused` at once, before anything else, if Redis
        refuses the login or the database (a configuration mistake, not an
        outage to wait out).
        """
        try:
            await verify_login(self._redis, self.settings.redis)
        except RedisRefused:
            if self._owns_redis:
                await self._redis.aclose()
            raise
        prefetch: asyncio.Task[Items] | None = None
        committing: asyncio.Task[None] | None = None
        sighup = self._handle_sighup()
        beating = asyncio.create_task(self.heartbeat.run(), name="heartbeat")
        try:
            if self.health is not None:
                await self.health.start()  # first: a standby says so too
            self._watching = asyncio.create_task(self.watch.run(), name="group-watch")
            if not await self._take_the_file():
                return 0
            self.holds_file = True
            # The writer only: standbys would repeat its warnings.
            self._watching_groups = asyncio.create_task(self.stale_groups.run(), name="stale-groups")
            checkpoint = await asyncio.to_thread(self.sink.open)
            if self.sink.holds_another_format:
                checkpoint = await asyncio.to_thread(self._rotate_for_format, checkpoint)
            rotation = self.settings.rotation
            if rotation.rotates:
                self.commits.rotation = RotationPolicy(rotation, self._content_since(checkpoint.offset))
                self.commits.on_rotated = self.keeper.wake
            await asyncio.to_thread(self.keeper.start)
            log.info(
                "writing %s from stream %r, group %r as %r (resuming after %s, at byte %d); %s; %s",
                self.settings.output,
                self.settings.keys.records,
                self.settings.group,
                self.settings.consumer,
                checkpoint.last_id,
                checkpoint.offset,
                rotation.describe(),
                speedups.describe(),
            )
            await self._retrying(self.reader.ensure_group)
            await self._take_over_pending()
            while True:
                if prefetch is not None:
                    # Even when stopping: what this read delivered is in hand
                    # (pending for us), so it is written before we exit.  It
                    # returns within block_ms, as a plain read would.
                    items, prefetch = await prefetch, None
                elif self._stopping:
                    break
                else:
                    items = await self._retrying(self.reader.new)
                if items:
                    self.caught_up.clear()
                    # A pipeline: while one batch is written and acknowledged
                    # (the disk, Redis), the next is read and rendered (the
                    # CPU).  The next read is sent once the write before has
                    # finished, so it takes everything that arrived meanwhile:
                    # under load, batches grow instead of queueing.  Writes
                    # and acks stay in stream order, one batch at a time.  A
                    # crash leaves what was read and not yet written pending,
                    # claimed on the next start like any batch in hand.
                    batch = self.renderer.render_items(items)
                    if committing is not None:
                        await committing
                    committing = asyncio.create_task(self._commit(batch))
                    if not self._stopping:
                        prefetch = asyncio.create_task(self._retrying(self.reader.new))
                else:
                    if committing is not None:
                        await committing
                        committing = None
                    await self.commits.drained()
                    self.caught_up.set()
                    # Idle: a rotation due by the clock, or a reopen asked for, need no batch.
                    await self.commits.maintain()
                await self._trim_now_and_then()
            if committing is not None:
                await committing
                committing = None
            await self.commits.drained()
            return 0
        except _GivingUp as exc:
            # Stopping during an outage: what is in hand stays unacknowledged
            # (pending), so the next start reads it again; nothing is lost.
            log.warning("stopping while %s is failing; the batch in hand will be read again on restart", exc)
            return 0
        finally:
            if sighup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            for task in (prefetch, committing, self._trimming, self._watching, self._watching_groups, beating):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, _GivingUp, RedisError, OSError):
                        await task
            await self.commits.close()
            await asyncio.to_thread(self.keeper.stop)
            if self._cleanup is not None:
                self._cleanup.cancel()
            self.sink.close()
            self.holds_file = False
            if self.health is not None:
                await self.health.close()
            await self.heartbeat.remove()
            if self._owns_redis:
                await self._redis.aclose()
            log.info("stopped: %s", self.stats.summary())

    def _rotate_for_format(self, checkpoint: Checkpoint) -> Checkpoint:
        """The file holds lines of another ``--format``: move it to a segment, so that no file mixes two.

        The same rotation as ``--rotate-size`` (a crash between its steps is
        recovered on start); the segment is then one of those retention and
        compression handle.
        """
        written_with = checkpoint.line_format
        if self.sink.path.is_symlink():
            # The rename would move the link and leave the lines in a new file beside it, off the link's target.
            raise StartError(
                f"--output {self.sink.path} is a symbolic link to a file of --format {written_with!r}, not this "
                f"run's {self.settings.format!r}: rotating would replace the link; give the file itself, or move "
                f"the file away"
            )
        segment = free_segment_path(self.sink.path, time.time())
        checkpoint = self.sink.rotate(segment)
        self.stats.rotations += 1
        log.warning(
            "%s was written with --format %r; this run's is %r: rotated it to %s, new lines go to a new %s",
            self.sink.path,
            written_with,
            self.settings.format,
            segment.name,
            self.sink.path.name,
        )
        return checkpoint

    def _content_since(self, size: int) -> float:
        """When the file's current content began, as far as rotation by the clock is concerned: its mtime."""
        if size:
            with contextlib.suppress(OSError):
                return os.stat(self.settings.output).st_mtime
        return time.time()

    async def _take_the_file(self) -> bool:
        """Wait for the writer lock (standby); False if told to stop first."""
        announced = False
        while not self.sink.try_lock():
            if not announced:
                log.info("%s is being written by another consumer: standing by for its lock", self.settings.output)
                announced = True
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=0.2)
                return False
            except TimeoutError:
                continue
        if announced:
            log.info("took over %s", self.settings.output)
        return True

    async def _take_over_pending(self) -> None:
        """Claim and write what the group left pending; from its start again after an outage (what was
        written meanwhile is skipped as already written)."""
        await self._retrying(self._take_over_pending_once)

    async def _take_over_pending_once(self) -> None:
        async for batch in self.reader.pending():
            if batch.deleted:
                log.error(
                    "%d pending entries were trimmed from the stream before being written: %s",
                    len(batch.deleted),
                    b", ".join(batch.deleted[:5]).decode(),
                )
                await self._retrying(lambda ids=batch.deleted: self.reader.ack(ids))
            if batch.entries:
                await self._handle(batch.entries, batch.deliveries)
        self._forget_idle_consumers_later()

    def _forget_idle_consumers_later(self) -> None:
        # Hygiene, not correctness: consumers of earlier runs with nothing
        # pending clutter XINFO CONSUMERS.
        async def forget() -> None:
            try:
                for info in await self._redis.xinfo_consumers(self.settings.keys.records, self.settings.group):
                    name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
                    if name != self.settings.consumer and int(info["pending"]) == 0:
                        await self._redis.xgroup_delconsumer(self.settings.keys.records, self.settings.group, name)
            except RedisError as exc:
                log.debug("could not forget idle consumers: %s", exc)

        self._cleanup = asyncio.create_task(forget())

    async def _handle(self, entries: list[Entry], deliveries: dict[bytes, int]) -> None:
        """Render, write, checkpoint and acknowledge one batch."""
        await self._commit(self.renderer.render_pending(entries, deliveries))

    async def _commit(self, batch: RenderedBatch) -> None:
        """Dead-letter and write a rendered batch (one at a time, in stream order).

        Returns once the lines are in the file; the group commit makes them
        durable and acknowledges them meanwhile (:mod:`consumers.group_commit`).
        """
        if batch.dead:
            await self._retrying(lambda: self._dead_letter(batch.dead))
        await self.commits.write(batch)

    async def _acknowledge(self, ids: bytes, count: int) -> None:
        await self._retrying(lambda: self.reader.ack_bulk(ids, count))
        self.stats.entries_acked += count

    async def _trim_now_and_then(self) -> None:
        """Start a trim every trim_interval seconds, beside the batches (one at a time)."""
        interval = self.settings.trim_interval
        if not interval or time.monotonic() - self._last_trim < interval:
            return
        if self._trimming is not None and not self._trimming.done():
            return
        self._last_trim = time.monotonic()
        self._trimming = asyncio.create_task(self._trim(interval))

    async def _trim(self, interval: float) -> None:
        try:
            self.stats.entries_trimmed += await self.trimmer.trim()
        except (RedisError, OSError) as exc:
            log.debug("trimming skipped this time: %s", exc)  # the next try is interval seconds away
        except Exception:
            # Trimming is upkeep: a fault in it must not stop the file.
            log.exception("trimming failed; trying again in %gs", interval)

    async def _dead_letter(self, dead: list[tuple[bytes, dict[bytes, bytes], str]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id, fields, reason in dead:
                log.warning("entry %s sent to dead letters: %s", entry_id.decode(), reason)
                entry = {
                    **fields,
                    stream.REASON.encode(): reason.encode(),
                    stream.ENTRY_ID.encode(): entry_id,
                    stream.GROUP.encode(): self.settings.group,
                }
                pipe.xadd(self.settings.keys.dead_letters, entry)  # type: ignore[arg-type]
            limit = self.settings.dead_letter_max_length
            if limit:
                # Once per batch, after its letters: XTRIM's reply is the exact count removed.  Approximate
                # (~): Redis drops whole stream nodes only, so the stream keeps up to one node more than asked.
                pipe.xtrim(self.settings.keys.dead_letters, maxlen=limit, approximate=True)
            replies = await pipe.execute()
        self.stats.dead_lettered += len(dead)
        if limit and replies[-1]:
            self.stats.dead_letters_trimmed += int(replies[-1])
            now = time.monotonic()
            if now - self._last_dead_trim_log >= 30:  # a flood trims every batch: a line every 30 s, as the catcher
                self._last_dead_trim_log = now
                log.warning(
                    "dead-letter stream %r is at --dead-letter-max-length (about %d): removed its oldest letters "
                    "(%d so far); look at them with `logrelay dead-letters list`",
                    self.settings.keys.dead_letters,
                    limit,
                    self.stats.dead_letters_trimmed,
                )

    async def _retrying(self, operation: Any) -> Any:
        """Run a Redis operation until it succeeds (logging an outage once) or a stop is requested."""
        attempt = 0
        while True:
            try:
                result = await operation()
            except (RedisError, OSError) as exc:
                if "NOGROUP" in str(exc):
                    # The stream (and its group) vanished, e.g. a Redis restart
                    # without persistence, or a failover to a replica that had
                    # not received the group: recreate them and carry on.
                    log.warning("consumer group %r is gone; creating it again", self.settings.group)
                    with contextlib.suppress(RedisError, OSError):
                        await self.reader.ensure_group()
                else:
                    self._note_outage(exc)
                await self._pause_or_give_up(retry_delay(attempt), "Redis")
                attempt += 1
                continue
            if self._outage_since is not None:
                log.warning("Redis is back after %.1fs", time.monotonic() - self._outage_since)
                self._outage_since = self._outage_error = None
            return result

    async def _pause_or_give_up(self, delay: float, what: str) -> None:
        """Wait ``delay`` before a retry; raise _GivingUp at once if a stop was requested."""
        if not self._stop.is_set():
            # asyncio.timeout: wait_for (3.11) can swallow a cancellation arriving with the stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
        if self._stop.is_set():
            raise _GivingUp(what)

    def _note_outage(self, exc: BaseException) -> None:
        self._outage_error = f"{type(exc).__name__}: {exc}"
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.error("Redis unavailable (%s: %s); retrying", type(exc).__name__, exc)
