"""Counters the catcher and the consumers keep about themselves.

Plain integers bumped on the event loop thread (no locks needed), logged as
one line (every ``--stats-interval`` and at shutdown), served on /metrics,
and read by tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


class Counters:
    """Rendering shared by the counter dataclasses below."""

    __slots__ = ()

    def as_dict(self) -> dict[str, int]:
        values: dict[str, int] = asdict(self)  # type: ignore[call-overload]
        return values

    def summary(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.as_dict().items())


@dataclass(slots=True)
class CatcherStats(Counters):
    """Monotonic counters, plus two gauges (connections, buffered)."""

    connections_accepted: int = 0
    connections_refused: int = 0
    connections_not_allowed: int = 0
    connections_idle_closed: int = 0
    slow_frames: int = 0
    connections: int = 0
    records_received: int = 0
    records_published: int = 0
    records_shed: int = 0
    bad_frames: int = 0
    oversize_frames: int = 0
    proxy_header_errors: int = 0
    partial_frames_dropped: int = 0
    dead_letters_published: int = 0
    #: The oldest dead letters removed to keep the dead-letter stream near --dead-letter-max-length.
    dead_letters_trimmed: int = 0
    batches_published: int = 0
    batches_deduplicated: int = 0
    #: WAITs that counted fewer replicas than --wait-replicas (their batches stayed buffered).
    replica_waits_short: int = 0
    redis_errors: int = 0
    buffered: int = 0
    backpressure_pauses: int = 0
    # Reading stopped while Redis works on a full window (see relay.publish.publisher): load, not trouble.
    read_ahead_pauses: int = 0
    # Bytes of incomplete frames held (a gauge), and how often a connection waited for room (relay.net.partial_frames).
    partial_bytes: int = 0
    partial_frame_waits: int = 0
    # The UDP inputs (relay.net.datagrams): datagrams read, dropped by the kernel for want of
    # receive-buffer room (as it reports them), and from senders outside --allow.
    datagrams_received: int = 0
    datagrams_dropped: int = 0
    datagrams_not_allowed: int = 0
    # The HTTP input (relay.net.http_protocol): requests answered, and those refused, by cause.
    http_requests: int = 0
    #: 401: no or wrong credentials (--http-basic-auth).
    http_refused_auth: int = 0
    #: 503: the buffer was full; nothing of the request kept.
    http_busy: int = 0
    #: 413: a body over max-frame-bytes, refused before it was read.
    http_too_large: int = 0
    #: 400, 405, 415, 431: malformed HTTP, another method, another media type, nothing to record.
    http_bad_requests: int = 0


@dataclass(slots=True)
class ConsumerStats(Counters):
    """What a file consumer did."""

    lines_written: int = 0
    #: The bytes of those lines (counted per batch).
    bytes_written: int = 0
    entries_acked: int = 0
    already_written: int = 0
    #: Records known by their identity as already in the file (sent again by a catcher after a failover).
    republished_skipped: int = 0
    dead_lettered: int = 0
    #: The oldest dead letters removed to keep the dead-letter stream near --dead-letter-max-length.
    dead_letters_trimmed: int = 0
    entries_trimmed: int = 0
    batches: int = 0
    #: fsyncs (per policy) and checkpoints that covered at least one batch; several batches may share one.
    syncs: int = 0
    #: The file rotated (--rotate-size, --rotate-interval) and reopened (SIGHUP after an outside rotation).
    rotations: int = 0
    reopens: int = 0
    #: Segments compressed and removed by retention (counted from the keeper's thread).
    segments_compressed: int = 0
    segments_removed: int = 0
