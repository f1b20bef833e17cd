"""When the central file is rotated, what its segments are called, and which ones retention removes (sans-I/O).

A rotated segment sits beside the file as ``PATH.<UTC time>[-N][.gz]``, the
time being the rotation's, to the second (``PATH.20261206T173000Z``).  At
most one rotation happens per second of that clock (a size rotation due in
the same second as the previous one waits for the next), so names are unique
without ``-N`` and sorting them gives write order, compressed or not; ``-N``
only appears when a name is taken already (the clock stepped back).

:class:`RotationSettings` holds what ``--rotate-*``, ``--keep*`` and
``--compress`` say; :class:`RotationPolicy` decides when the file is due;
:func:`parse_segment` and :func:`expired` read names and apply retention.
Nothing here touches a file: :mod:`consumers.file_sink` renames,
:mod:`consumers.segments` compresses and deletes.
"""

from __future__ import annotations

import calendar
import math
import re
import time
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "COMPRESSIONS",
    "Compression",
    "RotationPolicy",
    "RotationSettings",
    "Segment",
    "expired",
    "parse_duration",
    "parse_segment",
    "segment_name",
]

Compression = Literal["none", "gzip"]
COMPRESSIONS: Final[tuple[Compression, ...]] = ("none", "gzip")

#: A segment's time in its name: ``strftime`` of the rotation's UTC second.
TIME_FORMAT: Final = "%Y%m%dT%H%M%SZ"
_SEGMENT_SUFFIX: Final = re.compile(r"^\.(\d{8}T\d{6}Z)(?:-(\d+))?(\.gz)?$")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_UNITS: Final = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_NAMED_INTERVALS: Final = {"hourly": 3600.0, "daily": 86400.0, "weekly": 604800.0}


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``, ``"2w"``, or ``"hourly"``, ``"daily"``..."""
    named = _NAMED_INTERVALS.get(text.strip().lower())
    if named is not None:
        return named
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (try 90s, 15m, 1h, 7d, hourly or daily)")
    number, unit = match.groups()
    seconds = float(number) * _DURATION_UNITS[(unit or "").lower()]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive: {text!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class RotationSettings:
    """Rotation, retention and compression of the central file; all off by default.

    ``size``: rotate once the file holds this many bytes (it may exceed it by
    one batch, and by what a second brings when rotations come faster than
    one a second).  ``interval``: rotate at every multiple of this many
    seconds on the UTC clock (3600: on the hour; 86400: at midnight UTC).
    ``keep``, ``keep_age``, ``keep_bytes``: retention of the rotated
    segments (by count, by the age of their rotation, by their total size);
    the file itself, its checkpoint and its lock are never removed.
    ``compress``: how segments are compressed, off the write path.
    """

    size: int | None = None
    interval: float | None = None
    keep: int | None = None
    keep_age: float | None = None
    keep_bytes: int | None = None
    compress: Compression = "none"

    def __post_init__(self) -> None:
        if self.size is not None and self.size <= 0:
            raise ValueError("--rotate-size must be positive")
        if self.interval is not None and self.interval < 1:
            raise ValueError("--rotate-interval must be at least a second")
        if self.keep is not None and self.keep < 0:
            raise ValueError("--keep must not be negative")
        if self.keep_age is not None and self.keep_age <= 0:
            raise ValueError("--keep-age must be positive")
        if self.keep_bytes is not None and self.keep_bytes < 0:
            raise ValueError("--keep-bytes must not be negative")
        if self.compress not in COMPRESSIONS:
            raise ValueError(f"--compress must be one of {', '.join(COMPRESSIONS)}")

    @property
    def rotates(self) -> bool:
        return self.size is not None or self.interval is not None

    @property
    def retains(self) -> bool:
        return self.keep is not None or self.keep_age is not None or self.keep_bytes is not None

    def describe(self) -> str:
        """One line for the start log: what rotation does, or that it is off."""
        if not self.rotates:
            return "rotation off"
        parts = []
        if self.size is not None:
            parts.append(f"at {self.size} bytes")
        if self.interval is not None:
            parts.append(f"every {self.interval:g}s on the UTC clock")
        kept = [
            f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
            for name, value in (("keep", self.keep), ("keep-age", self.keep_age), ("keep-bytes", self.keep_bytes))
            if value is not None
        ]
        return f"rotating {' and '.join(parts)}, compress {self.compress}" + (f", {', '.join(kept)}" if kept else "")


class RotationPolicy:
    """When the file is due for rotation: its size, the UTC clock's boundaries, one rotation per second at most.

    ``started``: when the file's current content began (its modification time
    on start, when it holds something: a restart after a boundary rotates
    what was written before it).
    """

    __slots__ = ("_last_second", "_period", "settings")

    def __init__(self, settings: RotationSettings, started: float) -> None:
        self.settings = settings
        self._period = self._period_of(started)
        self._last_second = -1

    def _period_of(self, when: float) -> int:
        interval = self.settings.interval
        return math.floor(when / interval) if interval else 0

    def due(self, size: int, now: float) -> bool:
        """Whether a file of ``size`` bytes is to be rotated before the next write, at ``now``."""
        if size <= 0:
            return False  # an empty file is never a segment
        if self.settings.interval and self._period_of(now) > self._period:
            return True
        # One rotation per second of the clock; a clock stepped back does not hold rotation up.
        return self.settings.size is not None and size >= self.settings.size and math.floor(now) != self._last_second

    def rotated(self, now: float) -> None:
        """The file was rotated at ``now``: a new period and a new second begin."""
        self._period = self._period_of(now)
        self._last_second = math.floor(now)

    def reopened(self, now: float) -> None:
        """The file was replaced from outside (logrotate): its period starts now."""
        self._period = self._period_of(now)


@dataclass(frozen=True, slots=True, order=True)
class Segment:
    """A rotated segment's name, parsed; ordered by write order (time, then ``-N``)."""

    rotated_at: int  # seconds since the epoch, UTC
    index: int  # the N of -N; 0 without it
    name: str
    compressed: bool


def segment_name(base: str, when: float, index: int = 0) -> str:
    """The name of the segment of file ``base`` rotated at ``when``: ``base.20261206T173000Z[-N]``."""
    stamp = time.strftime(TIME_FORMAT, time.gmtime(math.floor(when)))
    return f"{base}.{stamp}" + (f"-{index}" if index else "")


def parse_segment(base: str, name: str) -> Segment | None:
    """The segment ``name`` is, if it is one of file ``base`` (plain or ``.gz``); None for anything else."""
    if not name.startswith(base):
        return None
    match = _SEGMENT_SUFFIX.match(name[len(base) :])
    if match is None:
        return None
    stamp, index, gz = match.groups()
    try:
        rotated_at = calendar.timegm(time.strptime(stamp, TIME_FORMAT))
    except ValueError:
        return None
    return Segment(rotated_at, int(index or 0), name, gz is not None)


def expired(segments: list[tuple[Segment, int]], settings: RotationSettings, now: float) -> list[Segment]:
    """The segments retention removes: given (segment, size) in write order, oldest first.

    A segment goes when more than ``keep`` are newer or as new, when it was
    rotated more than ``keep_age`` ago, or while the segments together hold
    more than ``keep_bytes``; the oldest go first.
    """
    doomed: list[Segment] = []
    remaining = len(segments)
    total = sum(size for _, size in segments)
    for segment, size in segments:
        too_many = settings.keep is not None and remaining > settings.keep
        too_old = settings.keep_age is not None and segment.rotated_at < now - settings.keep_age
        too_big = settings.keep_bytes is not None and total > settings.keep_bytes
        if not (too_many or too_old or too_big):
            break
        doomed.append(segment)
        remaining -= 1
        total -= size
    return doomed
