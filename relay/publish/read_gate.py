"""When the catcher stops reading sockets for the publisher's sake, and when it reads again.

Two limits stop the reading of sockets (through :class:`FlowControl`, all
connections at once; TCP then pushes back on senders):

* read-ahead: while Redis answers, at most about one window of records
  (``window`` x ``batch_max_bytes``) waits unsent; reading resumes once
  half of it is sent.  Decoding far ahead of Redis only costs memory (and
  starves the publishing task of turns of the event loop).
* the buffer: while Redis is away (a publish failed), records are held up
  to ``buffer_bytes`` in all; reading resumes once it is half empty.

Stopping at a limit and resuming at half of it keeps a connection from
being paused and resumed for every socket read near the limit.  No I/O:
:class:`ReadGate` is told the buffer's figures and calls the flow control.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from relay.common.counters import CatcherStats

__all__ = ["FlowControl", "ReadGate"]

log = logging.getLogger("logrelay.publisher")


class FlowControl(Protocol):
    """What the publisher needs from the server to push back on senders."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class _NoFlowControl:
    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class ReadGate:
    """Pauses and resumes the reading of sockets at the buffer's limits (see the module docstring).

    Its callers pass the buffer's bytes (``buffered``: everything accepted and
    not yet confirmed by Redis), the part of them not yet sent (``unsent``)
    and whether Redis is away (``outage``): then only the buffer's limit
    applies, since nothing can be sent.
    """

    def __init__(
        self, *, buffer_bytes: int, read_ahead: int, flow: FlowControl | None = None, stats: CatcherStats | None = None
    ) -> None:
        self.high_water = buffer_bytes
        self.low_water = buffer_bytes // 2
        self.read_ahead = min(buffer_bytes, read_ahead)
        self.flow: FlowControl = flow or _NoFlowControl()
        self.stats = stats or CatcherStats()
        self._paused = False
        self._full = False
        self._last_full_log = -60.0

    @property
    def paused(self) -> bool:
        """Whether reading is stopped, for either limit."""
        return self._paused

    @property
    def full(self) -> bool:
        """Whether reading is stopped because the buffer is full (not only read-ahead)."""
        return self._paused and self._full

    def check(self, buffered: int, unsent: int, *, outage: bool, records: int) -> None:
        """Stop reading at either limit; ``records`` (the buffer's count) is for the log line."""
        if buffered >= self.high_water:
            if not self.full:
                self._pause(full=True, buffered=buffered, records=records)
        elif not self._paused and not outage and unsent >= self.read_ahead:
            self._pause(full=False, buffered=buffered, records=records)

    def check_resume(self, buffered: int, unsent: int, *, outage: bool) -> None:
        """Read again once under half of every limit that applies."""
        if not self._paused or buffered > self.low_water:
            return
        if not outage and unsent > self.read_ahead // 2:
            return
        self._paused = self._full = False
        log.debug("buffer drained to %d bytes: reading again", buffered)
        self.flow.resume_reading()

    def _pause(self, *, full: bool, buffered: int, records: int) -> None:
        already = self._paused
        self._paused = True
        self._full = full
        if full:
            self.stats.backpressure_pauses += 1
            now = time.monotonic()
            # Under sustained load a small buffer fills and drains many times a
            # second: say it once per half minute, the count is in the stats.
            if now - self._last_full_log >= 30:
                self._last_full_log = now
                log.warning(
                    "buffer full (%d records, %.1f MiB): pausing reads until Redis catches up",
                    records,
                    buffered / 2**20,
                )
        else:
            self.stats.read_ahead_pauses += 1
        if not already:
            self.flow.pause_reading()
