"""Heartbeats on a real Redis: what ``logrelay status`` lists as the live processes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from relay.common.heartbeat import Heartbeat, read_heartbeats
from relay.common.stream import StreamKeys
from tests.support.realredis import RedisServer

KEYS = StreamKeys("logs")


async def test_a_beat_stores_the_description_with_a_ttl_and_lists_the_process(redis: Redis) -> None:
    counters = {"records_received": 0}
    heartbeat = Heartbeat(
        redis, KEYS, "catcher", "host-1", lambda: {"address": "127.0.0.1:9020", "counters": dict(counters)},
        rates=("records_received",), interval=2.0,
    )  # fmt: skip
    await heartbeat.beat()
    assert heartbeat.key == "{logs}:process:catcher:host-1"
    stored = orjson.loads(await redis.get(heartbeat.key))
    assert (stored["kind"], stored["id"], stored["address"]) == ("catcher", "host-1", "127.0.0.1:9020")
    assert stored["rates"] == {}  # no beat before: no rate yet
    assert 0 < await redis.pttl(heartbeat.key) <= 6000  # three intervals
    counters["records_received"] = 500
    await heartbeat.beat()
    (listed,) = await read_heartbeats(redis, KEYS)
    assert listed["id"] == "host-1"
    assert listed["counters"] == {"records_received": 500}
    assert listed["rates"]["records_received"] > 0
    assert listed["age"] >= 0


async def test_a_process_whose_key_expired_is_not_listed_and_a_clean_stop_removes_it(redis: Redis) -> None:
    gone = Heartbeat(redis, KEYS, "consumer", "old", lambda: {}, interval=1.0)
    live = Heartbeat(redis, KEYS, "consumer", "new", lambda: {"output": "/var/log/x"}, interval=1.0)
    await gone.beat()
    await live.beat()
    await redis.delete(gone.key)  # what the TTL does to a process that died
    assert [item["id"] for item in await read_heartbeats(redis, KEYS)] == ["new"]
    await live.remove()
    assert await read_heartbeats(redis, KEYS) == []
    assert await redis.zscore(KEYS.processes, "consumer:new") is None


async def test_a_beat_that_fails_unexpectedly_does_not_end_the_heartbeat(redis: Redis) -> None:
    calls = []

    def describe() -> dict[str, object]:
        calls.append(1)
        if len(calls) == 1:
            return {"counters": {}, "odd": object()}  # orjson cannot encode it: a TypeError
        return {"counters": {}}

    heartbeat = Heartbeat(redis, KEYS, "consumer", "c-1", describe, interval=0.05)
    task = asyncio.create_task(heartbeat.run())
    try:
        for _ in range(100):
            if await redis.exists(heartbeat.key):
                break
            await asyncio.sleep(0.02)
        # Before the fix: the task ended with the TypeError, the process vanished from `logrelay status`,
        # and the consumer's exit re-raised it from its cleanup.
        assert not task.done()
        assert await redis.exists(heartbeat.key)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class CancelledAsItAnswers(Redis):
    """A client whose pipeline's reply and the cancellation of the task that sent it arrive together."""

    target: asyncio.Task[None] | None = None

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = super().pipeline(*args, **kwargs)
        execute = pipe.execute

        async def answer_then_cancel(*a: Any, **kw: Any) -> Any:
            reply = await execute(*a, **kw)
            if self.target is not None:
                asyncio.get_running_loop().call_soon(self.target.cancel)
                self.target = None
            return reply

        pipe.execute = answer_then_cancel  # type: ignore[method-assign]
        return pipe


async def test_the_heartbeat_ends_when_cancelled_as_the_reply_arrives(redis_server: RedisServer) -> None:
    client = CancelledAsItAnswers.from_url(redis_server.url)
    try:
        task = asyncio.create_task(Heartbeat(client, KEYS, "catcher", "c-1", dict, interval=0.05).run())
        client.target = task
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    finally:
        await client.aclose()
