"""Keeping the stream short: trim only what every consumer group has acknowledged.

An entry may go once no group can still need it.  For each group that is
the oldest entry still pending (delivered, not acknowledged), or, when
nothing is pending, the group's last delivered id; the stream is trimmed
below the oldest of those (``XTRIM MINID``), so every entry a group has not
acknowledged stays.  On Redis 7.0 this comes from XINFO GROUPS and the
XPENDING summary, as here.  (Redis 8.2 adds trimming options that consult the
groups itself; not used yet: this project's servers are 7.0.)

Consequences, stated: a stream with no group is never trimmed by this (the
catchers' ``--max-stream-length`` bounds it); a group created later starts
from what is left.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis

from consumers.filesink import stream_id_key

__all__ = ["StreamTrimmer", "safe_trim_point"]

log = logging.getLogger("logrelay.trimmer")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def safe_trim_point(redis: Redis, stream: str) -> str | None:
    """The lowest id any group may still need; None if there is no group."""
    groups: list[dict[str, Any]] = await redis.xinfo_groups(stream)
    points: list[str] = []
    for group in groups:
        if int(group["pending"]):
            summary: dict[str, Any] = await redis.xpending(stream, group["name"])
            points.append(_text(summary["min"]))
        else:
            points.append(_text(group["last-delivered-id"]))
    return min(points, key=stream_id_key) if points else None


class StreamTrimmer:
    def __init__(self, redis: Redis, stream: str) -> None:
        self.redis = redis
        self.stream = stream

    async def trim(self) -> int:
        """Delete the entries every group is done with; return how many went."""
        point = await safe_trim_point(self.redis, self.stream)
        if point is None or point == "0-0":
            return 0
        removed = int(await self.redis.xtrim(self.stream, minid=point, approximate=False))
        if removed:
            log.debug("trimmed %d entries of %r below %s", removed, self.stream, point)
        return removed
