"""Counters a catcher keeps about itself.

Plain integers bumped on the event loop thread (no locks needed), logged as
one line every ``--stats-interval`` and at shutdown, and read by tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class CatcherStats:
    """Monotonic counters, plus two gauges (connections, buffered)."""

    connections_accepted: int = 0
    connections_refused: int = 0
    connections_idle_closed: int = 0
    connections: int = 0
    records_received: int = 0
    records_published: int = 0
    bad_frames: int = 0
    oversize_frames: int = 0
    proxy_header_errors: int = 0
    partial_frames_dropped: int = 0
    dead_letters_published: int = 0
    batches_published: int = 0
    batches_deduplicated: int = 0
    redis_errors: int = 0
    buffered: int = 0
    backpressure_pauses: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def summary(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.as_dict().items())
