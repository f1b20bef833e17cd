"""Heartbeats on a real Redis: what ``logrelay status`` lists as the live processes."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from relay.common.heartbeat import Heartbeat, read_heartbeats
from relay.common.stream import StreamKeys

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
