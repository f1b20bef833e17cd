"""Trimming only what every consumer group acknowledged, against a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from consumers.trimmer import TRIM_STEP, StreamTrimmer, safe_trim_point
from tests.support.realredis import RedisServer


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


class AckingMeanwhile(Redis):
    """A client during whose XINFO GROUPS -> XPENDING gap a consumer's XACK lands: pending goes to none."""

    async def xpending(self, name: object, groupname: object) -> object:  # type: ignore[override]
        pending = await self.xpending_range(name, groupname, "-", "+", 1000)  # type: ignore[arg-type]
        await self.xack(name, groupname, *[row["message_id"] for row in pending])  # type: ignore[arg-type]
        return await super().xpending(name, groupname)  # type: ignore[arg-type]


async def test_pending_entries_acknowledged_while_the_trim_point_is_found_are_not_an_error(
    redis_server: RedisServer,
) -> None:
    client = AckingMeanwhile(port=redis_server.port)
    try:
        ids = await fill(client, 5)
        await client.xgroup_create("logs", "g", id="0")
        await client.xreadgroup("g", "a", {"logs": ">"}, count=4)  # 4 pending
        # XINFO said 4 pending; by XPENDING all were acknowledged: done up to the 4th.
        assert await safe_trim_point(client, "logs") == ids[3].decode()
        assert await StreamTrimmer(client, "logs").trim() == 3
    finally:
        await client.aclose()


class CountingTrims(Redis):
    """Records how many entries each XTRIM removed."""

    steps: list[int]

    async def xtrim(self, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        removed = int(await super().xtrim(*args, **kwargs))  # type: ignore[arg-type]
        self.steps.append(removed)
        return removed


async def test_a_long_acknowledged_stretch_is_trimmed_in_bounded_steps(redis_server: RedisServer) -> None:
    client = CountingTrims(port=redis_server.port)
    client.steps = []
    try:
        async with client.pipeline(transaction=False) as pipe:
            for n in range(3 * TRIM_STEP + 50):
                pipe.xadd("logs", {"n": str(n)})
            ids = await pipe.execute()
        await client.xgroup_create("logs", "g", id="0")
        await client.xreadgroup("g", "a", {"logs": ">"}, count=len(ids))
        await client.xack("logs", "g", *ids[:-5])  # the last 5 stay pending
        assert await StreamTrimmer(client, "logs").trim() == len(ids) - 5
        assert [entry_id for entry_id, _ in await client.xrange("logs")] == ids[-5:]
        # No step deleted more than TRIM_STEP entries: Redis served others in between.
        assert len(client.steps) >= 4
        assert max(client.steps) <= TRIM_STEP
    finally:
        await client.aclose()


async def test_without_groups_or_before_any_read_nothing_is_trimmed(client: Redis) -> None:
    await fill(client, 5)
    assert await safe_trim_point(client, "logs") is None
    assert await StreamTrimmer(client, "logs").trim() == 0
    await client.xgroup_create("logs", "new", id="0")
    assert await StreamTrimmer(client, "logs").trim() == 0
    assert await client.xlen("logs") == 5


async def test_redis_7_falls_back_to_the_pending_summary_once(client: Redis) -> None:
    ids = await fill(client, 4)
    await client.xgroup_create("logs", "g", id="0")
    read = await client.xreadgroup("g", "a", {"logs": ">"}, count=2)
    await client.xack("logs", "g", *[entry_id for entry_id, _ in read[0][1]])
    trimmer = StreamTrimmer(client, "logs")
    assert await trimmer.trim() == 1  # below the last delivered id (ids[1])
    assert trimmer.native is False
    assert [entry_id for entry_id, _ in await client.xrange("logs")] == ids[1:]


# Redis 8.2 is not installable here; fakeredis emulates its XTRIM ... ACKED
# (entries every group has read and acknowledged go, holes included).
async def native_client(version: tuple[int, int]) -> Redis:
    import fakeredis

    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=version))


async def test_redis_8_2_trims_natively_every_acknowledged_entry_and_nothing_else() -> None:
    client = await native_client((8, 2))
    ids = await fill(client, 6)
    await client.xgroup_create("logs", "a", id="0")
    await client.xgroup_create("logs", "b", id="0")
    read_a = await client.xreadgroup("a", "x", {"logs": ">"})
    await client.xack("logs", "a", *[entry_id for entry_id, _ in read_a[0][1]])
    read_b = await client.xreadgroup("b", "y", {"logs": ">"}, count=4)
    await client.xack("logs", "b", ids[0], ids[2], ids[3])  # ids[1] pending in b; ids[4:] unread by b

    trimmer = StreamTrimmer(client, "logs")
    assert await trimmer.trim() == 3
    assert trimmer.native is True
    assert [entry_id for entry_id, _ in await client.xrange("logs")] == [ids[1], ids[4], ids[5]]
    assert len(read_b[0][1]) == 4


async def test_redis_8_2_never_trims_a_stream_without_groups() -> None:
    client = await native_client((8, 2))
    await fill(client, 3)
    trimmer = StreamTrimmer(client, "logs")
    assert await trimmer.trim() == 0
    assert await client.xlen("logs") == 3
    assert await StreamTrimmer(client, "missing").trim() == 0
