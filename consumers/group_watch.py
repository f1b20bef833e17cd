"""Whether Redis answers a consumer, and its group's lag and pending: asked once a second, beside the batches.

One XINFO GROUPS per second (a few microseconds in Redis, whatever the
load) tells both: an answer of any kind says Redis answers (for
``/readyz``), and the group's figures feed the ``logrelay_consumer_lag``
and ``logrelay_consumer_pending`` gauges.  A scrape reads the last figures
and never waits for Redis, so a Redis that stalls cannot stall ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from relay.common.metrics import GroupInfo
from relay.common.redis_client import raise_if_cancelled

__all__ = ["CHECK_SECONDS", "GroupWatch"]

log = logging.getLogger("logrelay.consumer")

#: How often Redis is asked; no answer within twice this says it does not answer.
CHECK_SECONDS = 1.0


class GroupWatch:
    """``redis_ok`` and ``info`` (lag, pending) of group ``group`` of stream ``stream``, kept fresh by :meth:`run`."""

    def __init__(self, redis: Redis, stream: str, group: str, *, where: str) -> None:
        self._redis = redis
        self.stream = stream
        self.group = group
        self.where = where  # Redis's address for the log
        self.redis_ok = False
        self.info = GroupInfo()

    async def refresh(self) -> None:
        """Ask once.  No answer: ``redis_ok`` goes False and the last figures stay (the last known).

        An answer without the group (not created yet, destroyed, its stream deleted): no figures.
        """
        try:
            # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow the cancellation that
            # stops the consumer when it arrives as the reply does, and run() would go on forever.
            async with asyncio.timeout(CHECK_SECONDS * 2):
                groups = await self._redis.xinfo_groups(self.stream)
        except ResponseError:
            groups = []  # no such stream yet: Redis answered all the same
        except (RedisError, OSError, TimeoutError) as exc:
            if self.redis_ok:
                log.error("Redis at %s does not answer (%s)", self.where, exc)
            self.redis_ok = False
            return
        self.redis_ok = True
        # Redis answered: figures for a group it no longer lists (destroyed, the stream deleted) are not current.
        info = GroupInfo()
        for group in groups:
            name = group["name"].decode() if isinstance(group["name"], bytes) else str(group["name"])
            if name == self.group:
                lag, pending = group.get("lag"), group.get("pending")
                # Redis answers nil for a lag it cannot tell cheaply (entries deleted in between).
                info = GroupInfo(None if lag is None else int(lag), None if pending is None else int(pending))
        self.info = info

    async def run(self) -> None:
        """:meth:`refresh` every CHECK_SECONDS until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception:
                # Upkeep: a reply we did not expect must not end the consumer.
                log.exception("reading the consumer group's figures failed; trying again")
            raise_if_cancelled()
            await asyncio.sleep(CHECK_SECONDS)
