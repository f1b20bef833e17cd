"""What ``logrelay status`` reports, read from Redis: the stream, its groups, the dead letters, the live processes.

Read-only and bounded: a handful of commands (``XINFO``, ``XLEN``, a
``XREVRANGE`` of the newest dead letters, the heartbeats), whatever the
stream's length.  Where Redis cannot say a group's lag (``XINFO GROUPS``
answers nil after deletions inside the group's unread range), it is counted
with ``XRANGE``, up to a bound.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from relay.common import stream
from relay.common.group_staleness import DEFAULT_STALE_AFTER, is_stale
from relay.common.heartbeat import read_heartbeats
from relay.common.stream import StreamKeys

__all__ = ["ConsumerInfo", "DeadLetterInfo", "GroupInfo", "StreamReport", "id_time", "read_report"]

#: Dead letters listed with their reasons.
NEWEST_DEAD_LETTERS: Final = 5
#: Most entries counted one by one where Redis does not know a group's lag.
LAG_COUNT_LIMIT: Final = 100_000
LAG_PAGE: Final = 1000


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def id_time(entry_id: str | None) -> float | None:
    """The Unix time in an entry id's first part (``1733500000123-0`` → ``1733500000.123``)."""
    if not entry_id:
        return None
    millis, _, _ = entry_id.partition("-")
    return int(millis) / 1000 if millis.isdigit() and millis != "0" else None


@dataclass(slots=True)
class ConsumerInfo:
    name: str
    pending: int
    #: Seconds since the consumer last read or acknowledged.
    idle: float


@dataclass(slots=True)
class GroupInfo:
    name: str
    #: Entries in the stream the group has not read yet; None if it could not be told.
    lag: int | None
    #: Entries read and not yet acknowledged.
    pending: int
    last_delivered_id: str
    consumers: list[ConsumerInfo] = field(default_factory=list)
    #: True when ``lag`` was counted (and may stop at LAG_COUNT_LIMIT) instead of read from Redis.
    lag_counted: bool = False
    #: No consumer, or none that asked for entries within the report's ``stale_after``
    #: (:mod:`relay.common.group_staleness`): the group holds entries back from trimming for nobody.
    stale: bool = False


@dataclass(slots=True)
class DeadLetterInfo:
    id: str
    time: float | None
    reason: str
    client: str


@dataclass(slots=True)
class StreamReport:
    stream: str
    exists: bool
    length: int = 0
    first_id: str | None = None
    last_id: str | None = None
    groups: list[GroupInfo] = field(default_factory=list)
    dead_letter_stream: str = ""
    dead_letters: int = 0
    newest_dead_letters: list[DeadLetterInfo] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)
    read_at: float = field(default_factory=time.time)

    @property
    def first_time(self) -> float | None:
        return id_time(self.first_id)

    @property
    def last_time(self) -> float | None:
        return id_time(self.last_id)

    def as_json(self) -> dict[str, Any]:
        """The report as plain JSON values (``status --json``); times as Unix seconds."""
        values = asdict(self)
        values["first_time"] = self.first_time
        values["last_time"] = self.last_time
        return values


async def read_report(redis: Redis, keys: StreamKeys, *, stale_after: float = DEFAULT_STALE_AFTER) -> StreamReport:
    """Read the report for the stream ``keys.records`` (RedisError if Redis fails); a group is marked stale
    when none of its consumers asked for entries within ``stale_after`` seconds."""
    report = StreamReport(stream=keys.records, exists=False, dead_letter_stream=keys.dead_letters)
    try:
        info = await redis.xinfo_stream(keys.records)
    except ResponseError as exc:
        if "no such key" not in str(exc).lower():
            raise
    else:
        report.exists = True
        report.length = int(info["length"])
        first, last = info.get("first-entry"), info.get("last-entry")
        report.first_id = _text(first[0]) if first else None
        report.last_id = _text(last[0]) if last else None
        for group in await redis.xinfo_groups(keys.records):
            report.groups.append(await _group(redis, keys.records, group, stale_after))
    report.dead_letters = int(await redis.xlen(keys.dead_letters))
    if report.dead_letters:
        for entry_id, fields in await redis.xrevrange(keys.dead_letters, count=NEWEST_DEAD_LETTERS) or []:
            fields = fields or {}
            report.newest_dead_letters.append(
                DeadLetterInfo(
                    id=_text(entry_id),
                    time=id_time(_text(entry_id)),
                    reason=_text(fields.get(stream.REASON.encode(), b"")),
                    client=_text(fields.get(stream.CLIENT.encode(), b"")),
                )
            )
    report.processes = await read_heartbeats(redis, keys)
    return report


async def _count_after(redis: Redis, key: str, after: str) -> int:
    """Entries after id ``after``, counted in pages of LAG_PAGE (memory stays bounded), at most LAG_COUNT_LIMIT."""
    counted = 0
    while counted < LAG_COUNT_LIMIT:
        page = await redis.xrange(key, min=f"({after}", count=min(LAG_PAGE, LAG_COUNT_LIMIT - counted))
        if not page:
            break
        counted += len(page)
        after = _text(page[-1][0])
    return counted


async def _group(redis: Redis, key: str, group: dict[Any, Any], stale_after: float) -> GroupInfo:
    name = _text(group["name"])
    last_delivered = _text(group["last-delivered-id"])
    lag = group.get("lag")
    info = GroupInfo(name, int(lag) if lag is not None else None, int(group["pending"]), last_delivered)
    if info.lag is None:
        # Redis cannot tell (deletions after the group's position): count, up to a bound.
        info.lag, info.lag_counted = await _count_after(redis, key, last_delivered), True
    for consumer in await redis.xinfo_consumers(key, name):
        info.consumers.append(
            ConsumerInfo(_text(consumer["name"]), int(consumer["pending"]), int(consumer["idle"]) / 1000)
        )
    info.stale = is_stale([consumer.idle for consumer in info.consumers], stale_after)
    return info
