"""Each catcher and consumer says it is alive, and how it is doing, in Redis: what ``logrelay status`` lists.

Every ``interval`` seconds a process sets its key (``{STREAM}:process:KIND:ID``,
:meth:`StreamKeys.heartbeat`) to a JSON description (its id, kind, host, pid,
address, when it started, its gauges and counters, and the rates of its
counters since the beat before) with a TTL of three intervals, and scores its
``KIND:ID`` in a sorted set (``{STREAM}:processes``) by the time, so a reader
finds the live ones without SCAN.  A process that dies stops renewing: its key
expires, and the next beat of any process drops members older than the TTL
from the set.  A clean stop removes both at once.  All keys share the
stream's hash slot.

Heartbeats are for people and monitoring, never for delivery: a Redis
failure while beating is logged at debug level and the next beat tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.common.redis_client import raise_if_cancelled
from relay.common.stream import StreamKeys

__all__ = ["HEARTBEAT_INTERVAL", "Heartbeat", "read_heartbeats"]

log = logging.getLogger("logrelay.heartbeat")

HEARTBEAT_INTERVAL: Final = 5.0
#: Beats a process may miss before it counts as gone.
MISSED_BEATS: Final = 3


class Heartbeat:
    """Keeps one process's heartbeat key fresh while :meth:`run` runs.

    ``describe`` returns what the process reports now: plain JSON values, with
    its counters under ``"counters"``; ``rates`` names the counters whose
    per-second rate since the previous beat is added under ``"rates"``.
    """

    def __init__(
        self,
        redis: Redis,
        keys: StreamKeys,
        kind: str,
        process_id: str,
        describe: Callable[[], Mapping[str, Any]],
        *,
        rates: tuple[str, ...] = (),
        interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.kind = kind
        self.process_id = process_id
        self.key = keys.heartbeat(kind, process_id)
        self.member = f"{kind}:{process_id}"
        self._describe = describe
        self._rate_names = rates
        self.interval = interval
        self.ttl = interval * MISSED_BEATS
        self._started = time.time()
        self._previous: tuple[float, dict[str, int]] | None = None

    def payload(self) -> dict[str, Any]:
        """The description this beat stores (rates computed against the previous call)."""
        now = time.time()
        described = dict(self._describe())
        counters: dict[str, int] = dict(described.get("counters", {}))
        rates: dict[str, float] = {}
        if self._previous is not None:
            then, before = self._previous
            elapsed = max(now - then, 1e-3)
            rates = {
                name: round((counters.get(name, 0) - before.get(name, 0)) / elapsed, 1) for name in self._rate_names
            }
        self._previous = (now, counters)
        return {
            "kind": self.kind,
            "id": self.process_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": round(self._started, 3),
            "beat": round(now, 3),
            "interval": self.interval,
            **described,
            "rates": rates,
        }

    async def beat(self) -> None:
        """Store one beat (and drop members of processes that stopped beating)."""
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self.key, orjson.dumps(self.payload()), px=int(self.ttl * 1000))
            pipe.zadd(self._keys.processes, {self.member: now})
            pipe.zremrangebyscore(self._keys.processes, "-inf", now - self.ttl)
            await pipe.execute()

    async def run(self) -> None:
        """Beat every ``interval`` seconds until cancelled."""
        while True:
            try:
                async with asyncio.timeout(self.interval):
                    await self.beat()
            except (RedisError, OSError, TimeoutError) as exc:
                log.debug("heartbeat not stored this time: %s", exc)
            except Exception:
                # Upkeep, as in consumers/group_watch.py: a beat we could not build must not end the beating
                # (the process would vanish from `logrelay status`, and its exit re-raise this).
                log.exception("heartbeat not stored this time; trying again")
            raise_if_cancelled()
            await asyncio.sleep(self.interval)

    async def remove(self) -> None:
        """On a clean stop: remove the key and the member at once (best effort, bounded)."""
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(1.0), self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(self.key)
                pipe.zrem(self._keys.processes, self.member)
                await pipe.execute()


def _member_name(member: Any) -> str:
    """A member of the processes set as text; "" if it is not UTF-8 (no heartbeat writes such a name)."""
    if not isinstance(member, bytes):
        return str(member)
    try:
        return member.decode()
    except UnicodeDecodeError:
        return ""


async def read_heartbeats(redis: Redis, keys: StreamKeys) -> list[dict[str, Any]]:
    """The live processes' descriptions, catchers first, each by id; each with ``age`` (seconds since its beat)."""
    members = await redis.zrange(keys.processes, 0, -1)
    if not members:
        return []
    # A member is KIND:ID, as :class:`Heartbeat` writes it; anything else in the set was not written by one.
    names = [name for member in members if ":" in (name := _member_name(member))]
    if not names:
        return []
    values = await redis.mget([keys.heartbeat(*name.split(":", 1)) for name in names])
    now = time.time()
    found = []
    for value in values:
        if value is None:
            continue  # expired: the process stopped beating
        with contextlib.suppress(orjson.JSONDecodeError, TypeError, ValueError):
            description = orjson.loads(value)
            if isinstance(description, dict):
                description["age"] = round(max(now - float(description.get("beat", now)), 0.0), 1)
                found.append(description)
    return sorted(found, key=lambda item: (str(item.get("kind")), str(item.get("id"))))
