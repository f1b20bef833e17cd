"""Trimming only what every consumer group acknowledged, against a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from consumers.trimmer import StreamTrimmer, safe_trim_point
from tests.realredis import RedisServer


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis(port=redis_server.port)
    yield client
    await client.aclose()


async def fill(client: Redis, count: int) -> list[bytes]:
    return [await client.xadd("logs", {"n": str(n)}) for n in range(count)]


async def test_nothing_a_group_has_not_acknowledged_is_trimmed(client: Redis) -> None:
    ids = await fill(client, 10)
    await client.xgroup_create("logs", "done", id="0")
    await client.xgroup_create("logs", "behind", id="0")
    read = await client.xreadgroup("done", "a", {"logs": ">"})
    await client.xack("logs", "done", *[entry_id for entry_id, _ in read[0][1]])
    partly = await client.xreadgroup("behind", "b", {"logs": ">"}, count=6)
    await client.xack("logs", "behind", *[entry_id for entry_id, _ in partly[0][1][:3]])  # 4th..6th pending

    assert await safe_trim_point(client, "logs") == ids[3].decode()
    assert await StreamTrimmer(client, "logs").trim() == 3
    remaining = [entry_id for entry_id, _ in await client.xrange("logs")]
    assert remaining == ids[3:]
    # What "behind" still holds pending is all there, and what it never read.
    assert [row["message_id"] for row in await client.xpending_range("logs", "behind", "-", "+", 10)] == ids[3:6]


async def test_a_group_with_nothing_pending_keeps_from_its_last_delivered_entry(client: Redis) -> None:
    ids = await fill(client, 5)
    await client.xgroup_create("logs", "g", id="0")
    read = await client.xreadgroup("g", "a", {"logs": ">"}, count=4)
    await client.xack("logs", "g", *[entry_id for entry_id, _ in read[0][1]])
    assert await StreamTrimmer(client, "logs").trim() == 3
    assert [entry_id for entry_id, _ in await client.xrange("logs")] == ids[3:]


async def test_without_groups_or_before_any_read_nothing_is_trimmed(client: Redis) -> None:
    await fill(client, 5)
    assert await safe_trim_point(client, "logs") is None
    assert await StreamTrimmer(client, "logs").trim() == 0
    await client.xgroup_create("logs", "new", id="0")
    assert await StreamTrimmer(client, "logs").trim() == 0
    assert await client.xlen("logs") == 5
