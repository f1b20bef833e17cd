"""Consumer groups nobody reads any more: found, warned about and measured, never deleted.

The trimmer keeps every entry some group has not acknowledged
(:mod:`consumers.trimmer`), so a group left behind holds the stream: it
grows until the catchers' ``--max-stream-length`` stops them, while this
consumer is caught up.  :class:`StaleGroupWatch` looks at the stream's groups
(:func:`relay.common.group_staleness.read_group_states`) every
:func:`check_seconds` and, for each group stale for ``--stale-group-after``
(no consumer, or all idle longer) that holds entries, logs a warning with
its name and the entries it holds: when it is first seen so, then every
:data:`REMIND_SECONDS` while it stays so.  The figures feed
``logrelay_consumer_stale_groups`` and ``logrelay_consumer_stale_group_entries``.

Deleting the group is the operator's call (``XGROUP DESTROY``): a group
idle for an hour may be a consumer that is down and will come back for its
entries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from redis.asyncio import Redis

from relay.common.group_staleness import GroupState, read_group_states
from relay.common.redis_client import raise_if_cancelled

__all__ = ["REMIND_SECONDS", "StaleGroupWatch", "check_seconds"]

log = logging.getLogger("logrelay.consumer")

#: Seconds between two warnings about the same stale group.
REMIND_SECONDS: Final = 600.0


def check_seconds(stale_after: float) -> float:
    """How often the groups are looked at: a tenth of the threshold, between 1 and 60 seconds."""
    return min(60.0, max(1.0, stale_after / 10))


class StaleGroupWatch:
    """The stale groups of ``stream`` (:attr:`stale`), kept fresh by :meth:`run`.

    ``own_group``, the group the watching consumer reads, is never one: that
    consumer is alive, and its consumers look idle only when it does not read
    for a while, before its first read after a downtime or while its file
    cannot be written (readiness says which); calling it abandoned, with
    ``XGROUP DESTROY`` as the remedy, would send the operator the wrong way.
    """

    def __init__(self, redis: Redis, stream: str, stale_after: float, *, own_group: str | None = None) -> None:
        self._redis = redis
        self.stream = stream
        self.stale_after = stale_after
        self.own_group = own_group
        #: The groups stale at the last look, most entries held first.
        self.stale: list[GroupState] = []
        # Group name -> when it was last warned about (monotonic); a group that recovers is forgotten.
        self._warned: dict[str, float] = {}

    async def check(self) -> list[GroupState]:
        """Look once: update :attr:`stale`, warn as due; return the stale groups.  RedisError if Redis fails."""
        states = await read_group_states(self._redis, self.stream)
        stale = [state for state in states if state.name != self.own_group and state.stale(self.stale_after)]
        stale.sort(key=lambda state: -1 if state.held is None else state.held, reverse=True)
        self.stale = stale
        now = time.monotonic()
        names = {state.name for state in stale}
        for name in [name for name in self._warned if name not in names]:
            del self._warned[name]
            log.info("consumer group %r of stream %r is no longer stale (read again, or destroyed)", name, self.stream)
        for state in stale:
            if state.held == 0:
                continue  # abandoned, but keeping nothing from trimming yet: warned once it does
            last = self._warned.get(state.name)
            if last is None or now - last >= REMIND_SECONDS:
                self._warned[state.name] = now
                self._warn(state)
        return stale

    def _warn(self, state: GroupState) -> None:
        held = "an unknown number of" if state.held is None else f"{state.held:,}"
        lag = "?" if state.lag is None else f"{state.lag:,}"
        log.warning(
            "consumer group %r of stream %r looks abandoned (%s; --stale-group-after %gs): it holds %s entries "
            "(lag %s, pending %d) that trimming keeps for it; if nobody will read it: XGROUP DESTROY %s %s",
            state.name,
            self.stream,
            state.describe_readers(),
            self.stale_after,
            held,
            lag,
            state.pending,
            self.stream,
            state.name,
        )

    async def run(self) -> None:
        """:meth:`check` every :func:`check_seconds` until cancelled; a failed look is tried again next time."""
        interval = check_seconds(self.stale_after)
        while True:
            try:
                await self.check()
            except Exception as exc:
                # Upkeep: Redis away is the group watch's to report; this tries again.
                log.debug("looking for stale consumer groups failed: %s", exc)
            raise_if_cancelled()
            await asyncio.sleep(interval)
