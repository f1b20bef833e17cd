"""Which groups nobody reads, and which one holds a full stream: judged on a real Redis."""

from __future__ import annotations

from redis.asyncio import Redis

from relay.common.group_staleness import (
    BELOW_COUNT_LIMIT,
    GroupState,
    full_stream_cause,
    holding_group,
    is_stale,
    read_group_states,
)
from tests.support.polling import async_wait_until

STREAM = "logs"


async def add(redis: Redis, count: int) -> list[bytes]:
    return [await redis.xadd(STREAM, {"n": str(n)}) for n in range(count)]


async def states_by_name(redis: Redis) -> dict[str, GroupState]:
    return {state.name: state for state in await read_group_states(redis, STREAM)}


async def test_no_stream_no_groups(redis: Redis) -> None:
    assert await read_group_states(redis, STREAM) == []


async def test_a_group_without_consumers_is_stale_at_once_and_holds_what_it_has_not_read(redis: Redis) -> None:
    await redis.xgroup_create(STREAM, "leftover", "$", mkstream=True)
    await add(redis, 5)
    (state,) = await read_group_states(redis, STREAM)
    assert (state.lag, state.pending, state.held, state.idles, state.idle) == (5, 0, 5, (), None)
    assert state.stale(3600)
    assert state.describe_readers() == "no consumer"


async def test_a_reading_consumer_keeps_its_group_fresh_and_one_that_stopped_goes_stale(redis: Redis) -> None:
    await add(redis, 6)
    await redis.xgroup_create(STREAM, "file", "0")
    await redis.xreadgroup("file", "writer", {STREAM: ">"}, count=4)
    states = await states_by_name(redis)
    # Read 4 of 6, none acknowledged: 2 unread and 4 pending are kept for it.
    assert (states["file"].lag, states["file"].pending, states["file"].held) == (2, 4, 6)
    assert not states["file"].stale(60)
    # Nobody reads any more: past the threshold (a fifth of a second here) the group is stale.
    await async_wait_until(
        lambda: _stale(redis, "file", 0.2), timeout=20, what="the group stale once its consumer stopped"
    )
    # One consumer that reads is enough to keep a group with a stopped one fresh.
    await async_wait_until(lambda: _stale(redis, "file", 2.0), timeout=20, what="the writer idle for 2 s")
    await redis.xreadgroup("file", "second", {STREAM: ">"}, count=1)
    state = (await states_by_name(redis))["file"]
    assert len(state.idles) == 2
    assert not state.stale(2.0)


async def _stale(redis: Redis, name: str, after: float) -> bool:
    return (await states_by_name(redis))[name].stale(after)


def test_stale_means_no_consumer_or_every_consumer_idle_longer_than_the_threshold() -> None:
    assert is_stale([], 10)
    assert is_stale([11, 12], 10)
    assert not is_stale([11, 3], 10)
    assert not is_stale([10], 10)


async def test_a_lag_redis_cannot_tell_is_counted_from_below_when_little_is_below(redis: Redis) -> None:
    await redis.xgroup_create(STREAM, "leftover", "$", mkstream=True)
    ids = await add(redis, 6)
    await redis.xgroup_create(STREAM, "file", "0")
    await redis.xreadgroup("file", "writer", {STREAM: ">"}, count=2)
    await redis.xdel(STREAM, ids[4])  # a deletion inside both groups' unread range: XINFO answers no lag
    assert {group["lag"] for group in await redis.xinfo_groups(STREAM)} == {None}
    states = await states_by_name(redis)
    assert (states["leftover"].lag, states["leftover"].held) == (5, 5)  # everything left in the stream
    assert (states["file"].lag, states["file"].held) == (3, 5)  # 3 unread, 2 pending


async def test_a_lag_is_unknown_when_too_much_is_below_the_group_to_count(redis: Redis) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(BELOW_COUNT_LIMIT + 1):
            pipe.xadd(STREAM, {"n": str(n)})
        await pipe.execute()
    await redis.xgroup_create(STREAM, "late", "$")  # Redis 7.0 cannot tell the lag of a group created at $
    await add(redis, 2)
    (state,) = await read_group_states(redis, STREAM)
    if (await redis.xinfo_groups(STREAM))[0]["lag"] is None:
        assert state.held is None
    else:  # a Redis that knows it
        assert state.held == 2


async def test_a_full_stream_is_blamed_on_the_group_that_holds_the_most(redis: Redis) -> None:
    await redis.xgroup_create(STREAM, "leftover", "$", mkstream=True)
    await add(redis, 8)
    await redis.xgroup_create(STREAM, "file", "$")
    await add(redis, 2)
    await redis.xreadgroup("file", "writer", {STREAM: ">"})
    states = await read_group_states(redis, STREAM)
    holder = holding_group(states)
    assert holder is not None
    assert holder.name == "leftover"
    assert full_stream_cause(states, 10) == "stream full (10 entries): group 'leftover' holds 10 entries (no consumer)"


def test_a_full_stream_without_groups_says_nobody_trims_it() -> None:
    assert holding_group([]) is None
    assert full_stream_cause([], 1000) == (
        "stream full (1,000 entries): no consumer group reads it, so nothing trims it"
    )


def test_groups_whose_count_is_unknown_come_after_known_ones_the_least_read_first() -> None:
    states = [
        GroupState("ahead", None, 0, "9-0"),
        GroupState("behind", None, 0, "2-0"),
        GroupState("known", 3, 0, "5-0"),
    ]
    holder = holding_group(states)
    assert holder is not None
    assert holder.name == "known"
    holder = holding_group(states[:2])
    assert holder is not None
    assert holder.name == "behind"
    assert full_stream_cause(states[:2], 5).endswith("group 'behind' holds an unknown number of entries (no consumer)")


def test_how_long_ago_a_group_last_read() -> None:
    assert GroupState("g", 0, 0, "0-0", (30.0, 90.0)).describe_readers() == "last read 30s ago"
    assert GroupState("g", 0, 0, "0-0", (600.0,)).describe_readers() == "last read 10m ago"
    assert GroupState("g", 0, 0, "0-0", (3 * 3600.0,)).describe_readers() == "last read 3.0h ago"
