"""GroupWatch against a real redis-server: whether Redis answers, and the group's lag and pending."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from consumers.group_watch import GroupWatch
from relay.common.metrics import GroupInfo
from tests.support.realredis import RedisServer


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, socket_timeout=1.0)
    yield client
    await client.aclose()


async def test_a_stream_not_created_yet_is_an_answer_without_figures(redis: Redis) -> None:
    watch = GroupWatch(redis, "logrelay", "logrelay-file", where="test")
    await watch.refresh()
    assert watch.redis_ok
    assert watch.info == GroupInfo(None, None)


async def test_lag_and_pending_follow_the_group(redis: Redis) -> None:
    await redis.xgroup_create("logrelay", "logrelay-file", id="0", mkstream=True)
    await redis.xgroup_create("logrelay", "another", id="0")
    for n in range(5):
        await redis.xadd("logrelay", {"n": n})
    watch = GroupWatch(redis, "logrelay", "logrelay-file", where="test")
    await watch.refresh()
    assert watch.info == GroupInfo(lag=5, pending=0)
    await redis.xreadgroup("logrelay-file", "c1", {"logrelay": ">"}, count=2)
    await watch.refresh()
    assert watch.info == GroupInfo(lag=3, pending=2)


async def test_no_answer_keeps_the_last_figures(redis: Redis, redis_server: RedisServer) -> None:
    await redis.xgroup_create("logrelay", "logrelay-file", id="0", mkstream=True)
    await redis.xadd("logrelay", {"n": 0})
    watch = GroupWatch(redis, "logrelay", "logrelay-file", where="test")
    await watch.refresh()
    assert (watch.redis_ok, watch.info) == (True, GroupInfo(lag=1, pending=0))
    redis_server.stop()
    await watch.refresh()
    assert (watch.redis_ok, watch.info) == (False, GroupInfo(lag=1, pending=0))


async def test_an_answer_without_the_group_drops_the_last_figures(redis: Redis) -> None:
    await redis.xgroup_create("logrelay", "logrelay-file", id="0", mkstream=True)
    for n in range(3):
        await redis.xadd("logrelay", {"n": n})
    watch = GroupWatch(redis, "logrelay", "logrelay-file", where="test")
    await watch.refresh()
    assert watch.info == GroupInfo(lag=3, pending=0)
    await redis.xgroup_destroy("logrelay", "logrelay-file")
    await watch.refresh()
    # Redis answered, and the group is gone: its old lag is not served as current (before the fix: lag=3).
    assert (watch.redis_ok, watch.info) == (True, GroupInfo(None, None))
    await redis.delete("logrelay")
    await redis.xgroup_create("logrelay", "logrelay-file", id="0", mkstream=True)
    await redis.xadd("logrelay", {"n": 0})
    await watch.refresh()
    assert watch.info == GroupInfo(lag=1, pending=0)
    await redis.delete("logrelay")
    await watch.refresh()  # no such stream: an answer too
    assert (watch.redis_ok, watch.info) == (True, GroupInfo(None, None))


class AnswersEvenWhenCancelled(Redis):
    """A client that, cancelled during XINFO GROUPS, still returns Redis's answer (as redis-py 8.2 was seen doing)."""

    asked: asyncio.Event

    async def xinfo_groups(self, name: str) -> list[dict[str, object]]:  # type: ignore[override]
        self.asked.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)  # the reply in flight, when the cancellation comes
        return await super().xinfo_groups(name)  # type: ignore[no-any-return]


async def test_the_watch_ends_when_cancelled_even_if_the_client_swallows_the_cancellation(
    redis_server: RedisServer,
) -> None:
    client = AnswersEvenWhenCancelled.from_url(redis_server.url)
    client.asked = asyncio.Event()
    try:
        task = asyncio.create_task(GroupWatch(client, "logrelay", "logrelay-file", where="test").run())
        await asyncio.wait_for(client.asked.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)  # before the fix: never, and the consumer's exit hung
    finally:
        await client.aclose()
