"""The catcher: an asyncio TCP server feeding :class:`StreamPublisher`.

Data path per connection: ``data_received`` → :class:`FrameDecoder` →
``publisher.add_record``.  Everything runs on one event loop thread; the only
shared state is :class:`ConnectionRegistry` (the open connections, whether
reading is paused) and the publisher's buffer.

Shutdown (SIGTERM/SIGINT), as uvicorn does it: close the listener → keep
reading open connections until each has gone quiet on a frame boundary, or
``drain_timeout`` passes → close them → publish what was buffered (bounded by
``shutdown_timeout``) → exit.  A second signal skips the waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.common import speedups
from relay.common.counters import CatcherStats
from relay.common.group_staleness import full_stream_cause, holding_group, read_group_states, read_idles
from relay.common.health import HealthServer, Readiness
from relay.common.heartbeat import Heartbeat
from relay.common.metrics import CatcherMetrics, new_registry
from relay.common.redis_client import create_redis, raise_if_cancelled
from relay.common.redis_refusal import RedisRefused, verify_login
from relay.common.signals import serve_with_signals
from relay.net.inputs import INPUT_LABELS, CatcherInputs, listen_stream
from relay.net.protocol import CatcherProtocol, format_peer
from relay.net.registry import ConnectionRegistry
from relay.publish.publisher import StreamPublisher
from relay.settings import CatcherSettings

__all__ = ["CatcherServer", "raise_fd_limit"]

log = logging.getLogger("logrelay.catcher")

# A draining connection that has sent nothing for this long, and sits on a
# frame boundary, has delivered what was in flight when we stopped.
DRAIN_QUIET_SECONDS = 0.25
# How often readiness asks Redis whether it answers.
REDIS_CHECK_SECONDS = 1.0
# How often a running catcher that Redis refuses says so again.
REFUSAL_REMINDER_SECONDS = 30.0


class CatcherServer:
    """Owns the listener, the connections, the publisher and their shutdown."""

    def __init__(
        self, settings: CatcherSettings, redis: Redis | None = None, *, registry: CollectorRegistry | None = None
    ) -> None:
        """``registry``: where the metrics go (``logrelay up`` shares one); None: a registry of its own."""
        self.settings = settings
        self.stats = CatcherStats()
        self.metrics_registry = registry or new_registry()
        self.metrics = CatcherMetrics(self.metrics_registry, self.stats, lambda: self.readiness().ready)
        self.registry = ConnectionRegistry(
            settings.max_connections,
            self.stats,
            max_per_client=settings.max_connections_per_client,
            max_partial_bytes=settings.max_partial_bytes,
            release_memory=release_free_memory,
        )
        self._redis = redis or create_redis(
            settings.redis, client_name=f"logrelay-catch:{settings.catcher_id}", slot_key=settings.keys.records
        )
        self._owns_redis = redis is None
        self.publisher = StreamPublisher(
            self._redis,
            settings.keys,
            catcher_id=settings.catcher_id,
            buffer_bytes=settings.buffer_bytes,
            batch_max_records=settings.batch_max_records,
            batch_max_bytes=settings.batch_max_bytes,
            window=settings.publish_window,
            linger=settings.linger_ms / 1000,
            stats=self.stats,
            metrics=self.metrics,
            flow=self.registry,
            max_stream_length=settings.max_stream_length,
            full_policy=settings.full_policy,
            dead_letter_max_length=settings.dead_letter_max_length,
            wait_replicas=settings.wait_replicas,
            wait_timeout=settings.wait_timeout_ms / 1000,
        )
        self._server: Any = None  # asyncio.Server (TLS) or relay.net.listener.Listener
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self.bound: list[tuple[str, int]] = []
        # The other inputs' addresses by kind ("syslog", "datagram", "http"), once started.
        # The other inputs (syslog, DatagramHandler, HTTP); their addresses by kind once started.
        self.inputs = CatcherInputs(settings, self.registry, self.publisher)
        self.redis_ok = False
        # While the stream is full: which group holds it, in one line (readiness), from _check_redis.
        self.full_cause: str | None = None
        self._full_holder: str | None = None  # the group it names ("": none), to log a change once
        # Set while Redis answers but refuses us (a password changed under a running catcher).
        self.redis_refusal: RedisRefused | None = None
        self.health = (
            HealthServer(settings.health_listen, self.readiness, self.metrics_registry)
            if settings.health_listen
            else None
        )
        self.heartbeat = Heartbeat(
            self._redis,
            settings.keys,
            "catcher",
            settings.catcher_id,
            self._describe,
            rates=("records_received", "records_published"),
        )

    def _describe(self) -> dict[str, object]:
        """What this catcher's heartbeat says (``logrelay status``)."""
        return {
            "address": ", ".join(format_peer(addr) for addr in self.bound),
            "inputs": {kind: format_peer(addr) for kind, addr in self.inputs.bound.items()},
            "connections": self.stats.connections,
            "ready": self.readiness().ready,
            "counters": self.stats.as_dict(),
            "wait_replicas": self.settings.wait_replicas,
            "awaiting_replicas": self.publisher.awaiting_replicas,
        }

    def readiness(self) -> Readiness:
        """Whether a balancer should send new connections here, and why not: the cause, not its symptom.

        A full stream (``--max-stream-length``, policy block) names the group
        that holds it; a full buffer behind a full stream or a failing Redis
        is reported as that cause.
        """
        if self._stop.is_set():
            return Readiness(False, "stopping")
        if self.redis_refusal is not None:
            return Readiness(False, self.redis_refusal.problem)
        if not self.redis_ok:
            return Readiness(False, "Redis unreachable")
        publisher = self.publisher
        if publisher.stream_full:
            return Readiness(False, self.full_cause or f"stream full ({publisher.max_stream_length:,} entries)")
        if publisher.in_outage:
            return Readiness(False, f"cannot publish to Redis ({publisher.last_failure})")
        if publisher.full:
            return Readiness(False, "buffer full")
        return Readiness(True, "ready")

    # -- lifecycle -------------------------------------------------------------

    async def serve(self) -> int:
        """Run until a stop signal; return the process exit code (0: nothing lost)."""
        return await serve_with_signals(self.run, self.request_stop)

    async def run(self) -> int:
        """Serve until :meth:`request_stop`; return the exit code.  No signal handling."""
        await self.start()
        await self._stop.wait()
        grace = self.settings.shutdown_grace
        if grace:
            # Readiness is already false: keep serving while the balancer
            # notices and sends new connections elsewhere.
            log.info("not ready; serving for %gs more (shutdown-grace) before closing", grace)
            await self._wait_or_force(asyncio.sleep(grace), grace)
        return await self.shutdown()

    def request_stop(self) -> None:
        if self._stop.is_set():
            log.warning("second stop signal: closing now without waiting")
            self._force.set()
        else:
            log.info("stop requested: no new connections; draining open ones")
            self._stop.set()

    async def verify_redis(self) -> None:
        """Raise :class:`RedisRefused` if Redis refuses the login or the database; an outage passes.

        Before listening: a catcher that cannot publish must not accept
        records (its senders would count them delivered).
        """
        try:
            await verify_login(self._redis, self.settings.redis)
        except RedisRefused:
            if self._owns_redis:
                await self._redis.aclose()
            raise

    async def start(self) -> None:
        """Check the Redis login, then listen on every input; :class:`RedisRefused` or an ``OSError`` if not."""
        settings = self.settings
        await self.verify_redis()
        raise_fd_limit(settings.max_connections + 64)
        self._publisher_task = asyncio.create_task(self.publisher.run(), name="publisher")
        self._tasks = [
            asyncio.create_task(self._check_redis(), name="redis-check"),
            asyncio.create_task(self._sweep_idle(), name="idle-sweep"),
        ]
        if settings.stats_interval:
            self._tasks.append(asyncio.create_task(self._log_stats(), name="stats"))

        if self.health is not None:
            # Before the listeners: an endpoint that cannot bind exits before any record is accepted.
            await self.health.start()

        def new_protocol() -> CatcherProtocol:
            return CatcherProtocol(settings, self.registry, self.publisher)

        try:
            self._server = await listen_stream(settings.listen, new_protocol, settings.tls)
            self.bound = [sock.getsockname()[:2] for sock in self._server.sockets]
            await self.inputs.open()
        except OSError:
            # One input listened, and may have accepted records, before another
            # could not: stop as on a signal (drain, publish the buffer), then fail.
            self._stop.set()
            await self.shutdown()
            raise
        self._tasks.append(asyncio.create_task(self.heartbeat.run(), name="heartbeat"))
        for address in (settings.listen, settings.listen_syslog, settings.listen_datagram, settings.listen_http):
            if address is not None and not address.is_loopback:
                log.warning("listening on %s, beyond loopback: restrict who can reach it", address)
        log.info(
            "catching on %s -> %s stream %r (dead letters %r), catcher id %s; %s",
            ", ".join(
                [format_peer(addr) for addr in self.bound]
                + [f"{INPUT_LABELS[kind]} {format_peer(addr)}" for kind, addr in self.inputs.bound.items()]
            ),
            settings.redis.safe_url,
            settings.keys.records,
            settings.keys.dead_letters,
            settings.catcher_id,
            speedups.describe(),
        )
        if speedups.missing():
            log.warning(
                "installed without its C extensions (no C compiler at install time?): the same results, "
                "several times the CPU per record; reinstall where gcc and the Python headers are present"
            )

    async def shutdown(self) -> int:
        settings = self.settings
        if self._server is not None:
            self._server.close()
        self.inputs.close()
        for conn in list(self.registry.connections):
            conn.ask_to_leave()
        # Resume any connection paused by a full buffer would overfill it;
        # paused ones are drained as the publisher frees room.
        await self._wait_or_force(self._drain_connections(), settings.drain_timeout)
        for conn in list(self.registry.connections):
            conn.abort()
        for task in self._tasks:
            task.cancel()
        await self.heartbeat.remove()
        self.publisher.close()
        try:
            await self._wait_or_force(asyncio.shield(self._publisher_task), settings.shutdown_timeout)
        finally:
            lost = self.publisher.buffered
            applied = self.publisher.awaiting_replicas
            if lost:
                self._publisher_task.cancel()
            if applied:
                log.error(
                    "exiting with %d accepted records not confirmed: %d applied on the master but acknowledged "
                    "by fewer than %d replicas (--wait-replicas), %d not published",
                    lost,
                    applied,
                    settings.wait_replicas,
                    lost - applied,
                )
            elif lost:
                log.error("exiting with %d accepted records not published (Redis unavailable)", lost)
            if self.health is not None:
                await self.health.close()
            if self._owns_redis:
                await self._redis.aclose()
        log.info("stopped: %s", self.stats.summary())
        return 1 if lost else 0

    async def _wait_or_force(self, aw: Any, limit: float) -> None:
        """Wait for ``aw`` at most ``limit`` seconds, or until a second stop signal."""
        task = asyncio.ensure_future(aw)
        force = asyncio.create_task(self._force.wait())
        try:
            await asyncio.wait({task, force}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            force.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _drain_connections(self) -> None:
        while True:
            now = time.monotonic()
            for conn in list(self.registry.connections):
                quiet = now - conn.last_active >= DRAIN_QUIET_SECONDS
                if quiet and not conn.paused and conn.at_frame_boundary:
                    conn.close()
            if not self.registry.connections:
                return
            await asyncio.sleep(0.05)

    # -- background tasks ------------------------------------------------------

    async def _check_redis(self) -> None:
        """Ping Redis every REDIS_CHECK_SECONDS for readiness; say so when it changes.

        The publisher keeps its own retries; this only tells the balancer (and
        the operator) whether this catcher can publish right now, even while
        no records flow.  Redis refusing the login while running (a password
        rotated under the catcher) is not an exit: the records accepted
        before stay buffered and are published once the password is fixed
        (an exit would lose them); the catcher is not ready, reading stops
        when the buffer fills, and the refusal is logged every
        REFUSAL_REMINDER_SECONDS.
        """
        target = self.settings.redis.safe_url
        first = True
        refused_logged = 0.0
        while True:
            try:
                # asyncio.timeout, not wait_for: in 3.11 wait_for returns the reply and drops a cancellation
                # that arrives with it (consumers/group_watch.py).
                async with asyncio.timeout(REDIS_CHECK_SECONDS * 2):
                    await self._redis.ping()
            except Exception as exc:
                refusal = RedisRefused.of(exc, self.settings.redis.url)
                if refusal is not None:
                    now = time.monotonic()
                    if self.redis_refusal is None or now - refused_logged >= REFUSAL_REMINDER_SECONDS:
                        refused_logged = now
                        log.error(
                            "%s; not ready, %d accepted records kept buffered until the setting is fixed",
                            refusal,
                            self.publisher.buffered,
                        )
                elif self.redis_ok or first or self.redis_refusal is not None:
                    log.error("Redis at %s is unreachable (%s); buffering records and retrying", target, exc)
                self.redis_refusal = refusal
                self.redis_ok = False
            else:
                if not self.redis_ok:
                    log.info("Redis at %s answers%s", target, "" if first else " again")
                self.redis_ok = True
                self.redis_refusal = None
                await self._find_full_cause()
            first = False
            raise_if_cancelled()
            await asyncio.sleep(REDIS_CHECK_SECONDS)

    async def _find_full_cause(self) -> None:
        """While the stream is full, find which group holds it (:attr:`full_cause`); log it when that group changes.

        XINFO GROUPS, and XINFO CONSUMERS of the group holding the most: a few
        commands a second, and only while the stream is full.
        """
        if not self.publisher.stream_full:
            self.full_cause = self._full_holder = None
            return
        stream = self.settings.keys.records
        try:
            async with asyncio.timeout(REDIS_CHECK_SECONDS * 2):
                holder = holding_group(await read_group_states(self._redis, stream, consumers=False))
                if holder is not None:
                    holder = replace(holder, idles=await read_idles(self._redis, stream, holder.name))
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("could not read the consumer groups of the full stream: %s", exc)  # the next check tries again
            return
        self.full_cause = full_stream_cause([] if holder is None else [holder], self.settings.max_stream_length)
        # Its figures change every second: a line when the stream fills, and when another group holds it.
        name = "" if holder is None else holder.name
        if name != self._full_holder:
            log.error("%s: holding records until it has room (policy block)", self.full_cause)
        self._full_holder = name

    async def _sweep_idle(self) -> None:
        """Close connections silent for idle-timeout, or stuck inside a frame for frame-timeout (slow loris)."""
        idle, frame = self.settings.idle_timeout, self.settings.frame_timeout
        periods = [limit / 2 for limit in (idle, frame) if limit]
        if not periods:
            return
        while True:
            await asyncio.sleep(min(*periods, 5.0))
            now = time.monotonic()
            for conn in list(self.registry.connections):
                if conn.paused:
                    continue  # we stopped reading it: not the client's delay
                if idle and conn.last_active < now - idle:
                    self.stats.connections_idle_closed += 1
                    log.info("closing connection from %s: idle for %.0fs (idle-timeout)", conn.client, idle)
                    conn.close()
                elif frame and conn.frame_started is not None and conn.frame_started < now - frame:
                    self.stats.slow_frames += 1
                    log.warning(
                        "closing connection from %s: a frame unfinished after %.0fs (frame-timeout)", conn.client, frame
                    )
                    conn.abort()

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stats_interval)
            log.info("stats: %s", self.stats.summary())


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None  # not glibc: its allocator keeps what it keeps
    return trim


_malloc_trim = _load_malloc_trim()


def release_free_memory() -> None:
    """Ask glibc to give the free memory in its heap back to the system (``malloc_trim``).

    Freed large frame buffers stay in the heap, and glibc's own trimming only
    gives back its top: after 300 connections dropped their incomplete 1 MiB
    frames, 19 MiB stayed with the catcher (``python -m bench.attack
    --phases partial``).  Called once the partial frames are gone after a
    large peak, not on the record path: fixing glibc's mmap threshold
    instead cost every record 0.5 µs (``python -m bench.ingest``).
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


def raise_fd_limit(wanted: int) -> None:
    """Raise the soft open-files limit towards ``wanted`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.debug("raised the open-files limit from %d to %d", soft, target)
