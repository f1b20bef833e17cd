"""GroupReader.ensure_group: where a group created again starts reading (a real redis-server)."""

from __future__ import annotations

from redis.asyncio import Redis

from consumers.group_reader import GroupReader


def reader(redis: Redis) -> GroupReader:
    return GroupReader(redis, "logs", "file", "c1", batch_size=100, block_ms=10)


async def group_start(redis: Redis) -> bytes:
    ((group),) = await redis.xinfo_groups("logs")
    last: bytes = group["last-delivered-id"]
    return last


async def test_a_new_group_of_a_new_file_reads_the_stream_from_its_beginning(redis: Redis) -> None:
    await redis.xadd("logs", {"n": "1"}, id="5-0")
    await reader(redis).ensure_group()
    assert await group_start(redis) == b"0-0"


async def test_a_group_created_again_starts_after_what_the_file_holds(redis: Redis) -> None:
    for n in range(1, 6):
        await redis.xadd("logs", {"n": str(n)}, id=f"{n}-0")
    await reader(redis).ensure_group("3-0")
    assert await group_start(redis) == b"3-0"


async def test_a_group_created_again_on_a_stream_that_lost_its_newest_entries_starts_at_its_last(redis: Redis) -> None:
    # After a failover: the file holds up to 9-0, the new master only up to 5-0;
    # what it adds next may be numbered below 9-0 and must be read.
    for n in range(1, 6):
        await redis.xadd("logs", {"n": str(n)}, id=f"{n}-0")
    await reader(redis).ensure_group("9-0")
    assert await group_start(redis) == b"5-0"


async def test_an_existing_group_is_left_where_it_is(redis: Redis) -> None:
    await redis.xadd("logs", {"n": "1"}, id="1-0")
    await redis.xgroup_create("logs", "file", id="0")
    await reader(redis).ensure_group("1-0")
    assert await group_start(redis) == b"0-0"


async def test_a_group_created_again_without_a_stream_makes_one(redis: Redis) -> None:
    await reader(redis).ensure_group("9-0")
    assert await group_start(redis) == b"0-0"
