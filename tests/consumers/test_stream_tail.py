"""StreamTail against a real redis-server: newest pages, the scan bound, following from the last id seen."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

from consumers.formatting import LineFormatter
from consumers.record_filter import RecordFilter
from consumers.stream_tail import EMPTY_STREAM_ID, StreamTail
from consumers.tail_view import NewestCollector, TailLine, TailView
from tests.support.entries import entry_for
from tests.support.realredis import RedisServer

KEY = "logrelay"


async def add(redis: Redis, seqs: range, *, level: int = logging.INFO) -> list[bytes]:
    """XADD one entry per number, in the catcher's layout; their ids."""
    ids = []
    for seq in seqs:
        record = logging.LogRecord("app.web", level, "/srv/app.py", 7, "record %d", (seq,), None)
        ids.append(await redis.xadd(KEY, entry_for(record)))  # type: ignore[arg-type]
    return ids


def messages(collector: NewestCollector) -> list[str]:
    return [
        outcome.text.decode().rsplit("] ", 1)[1].strip()
        for outcome in collector.oldest_first()
        if isinstance(outcome, TailLine)
    ]


async def test_scan_newest_pages_back_until_enough_matches(redis: Redis) -> None:
    ids = await add(redis, range(2500))
    one_in_five = RecordFilter.build(grep=r"^record \d*[05]$")  # seqs ending in 0 or 5: one in five
    collector = NewestCollector(TailView(LineFormatter(), one_in_five), 300)
    scan = await StreamTail(redis, KEY).scan_newest(collector, 100_000)
    assert messages(collector) == [f"record {seq}" for seq in range(1000, 2500, 5)]
    assert scan.newest_id == ids[-1]
    assert not scan.limit_reached
    assert collector.scanned == 1500  # stopped at the 300th match, across several pages of 300


async def test_scan_newest_stops_at_its_limit_and_says_so(redis: Redis) -> None:
    ids = await add(redis, range(250))
    nothing = RecordFilter.build(grep="never in any message")
    collector = NewestCollector(TailView(LineFormatter(), nothing), 10)
    scan = await StreamTail(redis, KEY).scan_newest(collector, 120)
    assert scan.limit_reached
    assert collector.scanned == 120
    assert scan.newest_id == ids[-1]

    # A limit the stream ends before is not reached.
    collector = NewestCollector(TailView(LineFormatter(), nothing), 10)
    scan = await StreamTail(redis, KEY).scan_newest(collector, 250)
    assert not scan.limit_reached
    assert collector.scanned == 250


async def test_an_absent_stream_is_empty(redis: Redis) -> None:
    tail = StreamTail(redis, KEY)
    collector = NewestCollector(TailView(LineFormatter(), RecordFilter()), 10)
    scan = await tail.scan_newest(collector, 1000)
    assert scan.newest_id == EMPTY_STREAM_ID
    assert collector.oldest_first() == []
    assert await tail.newest_id() == EMPTY_STREAM_ID
    assert await redis.exists(KEY) == 0  # reading made nothing


async def test_follow_goes_on_from_the_scans_newest_id_so_entries_added_in_between_are_not_missed(
    redis: Redis,
) -> None:
    await add(redis, range(5))
    tail = StreamTail(redis, KEY)
    collector = NewestCollector(TailView(LineFormatter(), RecordFilter()), 2)
    scan = await tail.scan_newest(collector, 1000)
    # Added after the scan and before the first XREAD: a follow from "$" would miss them.
    between = await add(redis, range(5, 8))
    batches = tail.follow(scan.newest_id, block_ms=100, count=2)
    seen: list[bytes] = []
    while len(seen) < 3:
        seen += [entry_id for entry_id, _ in await asyncio.wait_for(anext(batches), timeout=10)]
    assert seen == between
    later = await add(redis, range(8, 9))
    assert [entry_id for entry_id, _ in await asyncio.wait_for(anext(batches), timeout=10)] == later
    await batches.aclose()  # type: ignore[attr-defined]
    groups = await redis.xinfo_groups(KEY)
    assert groups == []


async def test_follow_outlives_a_redis_restart_and_says_so(redis: Redis, redis_server: RedisServer) -> None:
    first = await add(redis, range(2))
    outages: list[Exception] = []
    backs: list[bytes] = []
    batches = StreamTail(redis, KEY).follow(
        EMPTY_STREAM_ID, block_ms=100, on_outage=outages.append, on_back=backs.append
    )
    assert [entry_id for entry_id, _ in await asyncio.wait_for(anext(batches), timeout=10)] == first
    pending = asyncio.ensure_future(anext(batches))
    redis_server.stop()
    deadline = asyncio.get_running_loop().time() + 10
    while not outages:
        assert asyncio.get_running_loop().time() < deadline, "the outage was never reported"
        await asyncio.sleep(0.05)
    redis_server.start()  # the same port; without persistence the stream starts empty
    later = await add(redis, range(2, 3))
    assert [entry_id for entry_id, _ in await asyncio.wait_for(pending, timeout=20)] == later
    assert len(outages) == 1  # told once, not once per retry
    assert backs == [first[-1]]
    await batches.aclose()  # type: ignore[attr-defined]
