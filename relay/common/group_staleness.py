"""Which consumer groups of a stream nobody reads any more, and which one holds a full stream.

A group keeps every entry it has not acknowledged: the consumer's trimmer
(:mod:`consumers.trimmer`) never deletes below it.  A group left behind (a
consumer renamed with ``--group``, a tool's experiment) therefore holds the
stream until the catchers' ``--max-stream-length`` stops them, while the
real consumer is caught up.  This module says so in figures, for the
consumer's warning and metrics, the catcher's readiness reason and
``logrelay status``; it reads (``XINFO GROUPS``, ``XINFO CONSUMERS``, ``XLEN``)
and never changes or deletes a group.

A group is **stale** when it has no consumer, or when every consumer's
``idle`` (milliseconds since it last asked Redis for entries, answered or
not) is above the threshold: a live consumer blocks in ``XREADGROUP`` every
few seconds even when nothing arrives, so only a consumer that stopped goes
idle for long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import ResponseError

__all__ = [
    "BELOW_COUNT_LIMIT",
    "DEFAULT_STALE_AFTER",
    "MAX_GROUPS",
    "GroupState",
    "full_stream_cause",
    "holding_group",
    "is_stale",
    "read_group_states",
    "read_idles",
]

#: Seconds without a read after which a group counts as stale (``--stale-group-after``).
DEFAULT_STALE_AFTER: Final = 3600.0
#: Most groups judged per look (one XINFO CONSUMERS each): a stream has a handful.
MAX_GROUPS: Final = 100
#: Most entries read (XRANGE) below a group whose lag Redis cannot tell, to count it.
BELOW_COUNT_LIMIT: Final = 500


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _id_key(entry_id: str) -> tuple[int, int]:
    millis, _, sequence = entry_id.partition("-")
    return int(millis), int(sequence or 0)


def is_stale(idles: Sequence[float], after: float) -> bool:
    """Whether a group whose consumers have been idle ``idles`` seconds is stale: none, or all above ``after``."""
    return not idles or min(idles) > after


@dataclass(frozen=True, slots=True)
class GroupState:
    """One group of a stream, as Redis describes it."""

    name: str
    #: Entries in the stream the group has not read; None if Redis cannot tell (deletions inside that range).
    lag: int | None
    #: Entries read and not acknowledged.
    pending: int
    last_delivered_id: str
    #: Seconds since each consumer last asked for entries.
    idles: tuple[float, ...] = ()

    @property
    def held(self) -> int | None:
        """Entries this group keeps in the stream (not read, or read and not acknowledged); None if unknown."""
        return None if self.lag is None else self.lag + self.pending

    @property
    def idle(self) -> float | None:
        """Seconds since the group's most recent read; None when it has no consumer."""
        return min(self.idles) if self.idles else None

    def stale(self, after: float) -> bool:
        """See :func:`is_stale`."""
        return is_stale(self.idles, after)

    def describe_readers(self) -> str:
        """``no consumer`` or ``last read 3.2h ago``: why a full stream is this group's doing."""
        idle = self.idle
        if idle is None:
            return "no consumer"
        if idle < 120:
            return f"last read {idle:.0f}s ago"
        if idle < 7200:
            return f"last read {idle / 60:.0f}m ago"
        return f"last read {idle / 3600:.1f}h ago"


async def read_group_states(redis: Redis, stream: str, *, consumers: bool = True) -> list[GroupState]:
    """The stream's groups (at most :data:`MAX_GROUPS`), with their consumers' idle times unless ``consumers`` is
    False; an empty list when the stream does not exist.  Raises RedisError when Redis fails.

    Where Redis cannot tell a group's lag (a group created at ``$`` on Redis
    7.0, deletions inside its unread range), it is the stream's length less
    the entries up to the group's last delivered id, counted when there are
    at most :data:`BELOW_COUNT_LIMIT` of them: so always for the group that
    holds trimming back (nothing below it is left but part of a node).
    Otherwise the lag stays unknown (None).
    """
    try:
        groups: list[dict[str, Any]] = (await redis.xinfo_groups(stream))[:MAX_GROUPS]
    except ResponseError:
        return []  # no such stream
    length = int(await redis.xlen(stream)) if any(group.get("lag") is None for group in groups) else 0
    states = []
    for group in groups:
        name = _text(group["name"])
        delivered = _text(group["last-delivered-id"])
        lag = None if group.get("lag") is None else int(group["lag"])
        if lag is None:
            below = await redis.xrange(stream, max=delivered, count=BELOW_COUNT_LIMIT + 1) or []
            lag = length - len(below) if len(below) <= BELOW_COUNT_LIMIT else None
        idles = await read_idles(redis, stream, name) if consumers else ()
        states.append(GroupState(name, lag, int(group["pending"]), delivered, idles))
    return states


async def read_idles(redis: Redis, stream: str, group: str) -> tuple[float, ...]:
    """Seconds since each consumer of ``group`` last asked for entries (XINFO CONSUMERS)."""
    return tuple(int(consumer["idle"]) / 1000 for consumer in await redis.xinfo_consumers(stream, group))


def holding_group(states: Sequence[GroupState]) -> GroupState | None:
    """The group that holds the most entries (the one keeping the stream from being trimmed); None if no group.

    Groups whose count is unknown come after those known, the one read least far first.
    """
    if not states:
        return None
    return max(
        states, key=lambda s: (s.held is not None, s.held or 0, [-part for part in _id_key(s.last_delivered_id)])
    )


def full_stream_cause(states: Sequence[GroupState], max_length: int) -> str:
    """Why a stream at ``max_length`` entries is not trimmed, in one line (a catcher's readiness reason)."""
    group = holding_group(states)
    if group is None:
        return f"stream full ({max_length:,} entries): no consumer group reads it, so nothing trims it"
    held = "an unknown number of" if group.held is None else f"{group.held:,}"
    return (
        f"stream full ({max_length:,} entries): group {group.name!r} holds {held} entries ({group.describe_readers()})"
    )
