"""Keeping the stream short: trim only what every consumer group has acknowledged.

An entry may go once no group can still need it.  For each group that is
the oldest entry still pending (delivered, not acknowledged), or, when
nothing is pending, the group's last delivered id; the stream is trimmed
below the oldest of those (``XTRIM MINID``), so every entry a group has not
acknowledged stays.  On Redis 7.0 this comes from XINFO GROUPS and the
XPENDING summary (:func:`safe_trim_point`).

Redis 8.2 and later do it natively: ``XTRIM key MAXLEN 0 ACKED`` deletes
exactly the entries that every group has read and acknowledged, in one
atomic step on the server, and also those acknowledged above an entry still
pending (holes), which the MINID path keeps.  The trimmer tries the native
form first and, when the server refuses it (a syntax error before 8.2),
falls back to the MINID path for the rest of its life.  (Any error on the
very first try means the same; once the native form has worked, errors are
real and raised.)

The MINID path trims in steps of at most :data:`TRIM_STEP` entries, whole
stream nodes at a time (``XTRIM ... MINID ~ id LIMIT n``), each followed by
a pause as long as the step took, so that Redis serves its other clients in
between.  Measured with ``python -m bench.trim`` (600,000 entries, another
client's XADD round trips meanwhile): one exact trim held that client for
120-170 ms; steps of 10,000 back to back, p50 1.5 ms and up to 34 ms; these
paused steps of 2,000, p50 0.25 ms, p99 0.9 ms, the trim itself taking
~0.45 s instead of ~0.13 s.
The few entries below the point that share a node with entries above it
go in a last, exact step.

Consequences, stated: a stream with no group is never trimmed by this (the
catchers' ``--max-stream-length`` bounds it); on the native path the check
for "no group" runs in the same script as the trim, because ACKED with no
group at all would delete everything.  A group created later starts from
what is left.  A group nobody reads any more holds the stream from where it
stopped, until someone destroys it: the consumer says so
(:mod:`consumers.stale_groups`) and never deletes a group itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from consumers.checkpoint import stream_id_key

__all__ = ["NATIVE_TRIM_SCRIPT", "TRIM_STEP", "StreamTrimmer", "safe_trim_point"]

#: Most entries one XTRIM may delete: under a millisecond of Redis's time
#: for records of ~700 bytes (``python -m bench.trim``).
TRIM_STEP = 2000
#: Steps per trim: a stream far behind is caught up over several trims.
MAX_TRIM_STEPS = 1000

log = logging.getLogger("logrelay.trimmer")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def safe_trim_point(redis: Redis, stream: str) -> str | None:
    """The lowest id any group may still need; None if there is no group."""
    groups: list[dict[str, Any]] = await redis.xinfo_groups(stream)
    points: list[str] = []
    for group in groups:
        delivered = _text(group["last-delivered-id"])
        if int(group["pending"]):
            summary: dict[str, Any] = await redis.xpending(stream, group["name"])
            # None: acknowledged since XINFO (a consumer's XACK in flight),
            # so everything up to what it had delivered then is done.
            points.append(delivered if summary["min"] is None else _text(summary["min"]))
        else:
            points.append(delivered)
    return min(points, key=stream_id_key) if points else None


# Redis 8.2+: trim what every group acknowledged, unless there is no group
# (ACKED with no group would consider every entry done).  Returns the count.
NATIVE_TRIM_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 or #redis.call('XINFO', 'GROUPS', KEYS[1]) == 0 then
    return 0
end
return redis.call('XTRIM', KEYS[1], 'MAXLEN', '0', 'ACKED')
"""


class StreamTrimmer:
    """Trims one stream; ``native`` is None until the server has told which path works."""

    def __init__(self, redis: Redis, stream: str) -> None:
        self.redis = redis
        self.stream = stream
        self.native: bool | None = None
        self._native_script = redis.register_script(NATIVE_TRIM_SCRIPT)

    async def trim(self) -> int:
        """Delete the entries every group is done with; return how many went."""
        if self.native is not False:
            try:
                removed = int(await self._native_script(keys=[self.stream]))
            except ResponseError as exc:
                if self.native:  # it worked before: a real failure, not a missing option
                    raise
                self.native = False
                log.info("XTRIM ... ACKED refused (Redis before 8.2: %s): trimming below XPENDING/XINFO GROUPS", exc)
            else:
                self.native = True
                if removed:
                    log.debug("trimmed %d acknowledged entries of %r (XTRIM ACKED)", removed, self.stream)
                return removed
        point = await safe_trim_point(self.redis, self.stream)
        if point is None or point == "0-0":
            return 0
        removed = 0
        for _ in range(MAX_TRIM_STEPS):
            started = time.monotonic()
            step = int(await self.redis.xtrim(self.stream, minid=point, approximate=True, limit=TRIM_STEP))
            # As long again for everyone else: trimming never takes more
            # than half of Redis, even when it has a long stretch to catch up.
            await asyncio.sleep(time.monotonic() - started)
            removed += step
            if not step:
                # What is left below the point shares a node with entries
                # above it (at most one node's worth): exact, and cheap now.
                removed += int(await self.redis.xtrim(self.stream, minid=point, approximate=False))
                break
        if removed:
            log.debug("trimmed %d entries of %r below %s", removed, self.stream, point)
        return removed
