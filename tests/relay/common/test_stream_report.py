"""``logrelay status``'s report, read from a real Redis."""

from __future__ import annotations

from redis.asyncio import Redis

from relay.common.stream import StreamKeys
from relay.common.stream_report import id_time, read_report

KEYS = StreamKeys("logs")


async def test_a_stream_that_does_not_exist_is_reported_as_such(redis: Redis) -> None:
    report = await read_report(redis, KEYS)
    assert (report.exists, report.length, report.groups, report.dead_letters) == (False, 0, [], 0)


async def test_lag_pending_consumers_and_the_newest_dead_letters(redis: Redis) -> None:
    ids = [await redis.xadd(KEYS.records, {"v": "1", "n": str(n)}) for n in range(10)]
    await redis.xgroup_create(KEYS.records, "file", id="0")
    await redis.xgroup_create(KEYS.records, "idle", id="$")
    await redis.xreadgroup("file", "writer-1", {KEYS.records: ">"}, count=4)
    await redis.xack(KEYS.records, "file", ids[0], ids[1])
    for n in range(7):
        await redis.xadd(KEYS.dead_letters, {"v": "1", "reason": f"reason {n}", "client": "10.0.0.1:5000"})

    report = await read_report(redis, KEYS)
    assert (report.length, report.first_id, report.last_id) == (10, ids[0].decode(), ids[-1].decode())
    assert report.last_time == id_time(ids[-1].decode())
    groups = {group.name: group for group in report.groups}
    assert (groups["file"].lag, groups["file"].pending) == (6, 2)
    assert [(c.name, c.pending) for c in groups["file"].consumers] == [("writer-1", 2)]
    assert (groups["idle"].lag, groups["idle"].pending, groups["idle"].consumers) == (0, 0, [])
    assert report.dead_letters == 7
    assert [letter.reason for letter in report.newest_dead_letters] == [f"reason {n}" for n in (6, 5, 4, 3, 2)]
    json = report.as_json()
    assert [(g["name"], g["lag"], g["pending"]) for g in json["groups"]] == [("file", 6, 2), ("idle", 0, 0)]
    assert json["dead_letters"] == 7


async def test_a_lag_redis_cannot_tell_is_counted(redis: Redis) -> None:
    ids = [await redis.xadd(KEYS.records, {"n": str(n)}) for n in range(6)]
    await redis.xgroup_create(KEYS.records, "file", id=ids[0])
    await redis.xdel(KEYS.records, ids[3])  # a deletion after the group's position: XINFO's lag is nil
    (group,) = (await read_report(redis, KEYS)).groups
    assert (group.lag, group.lag_counted) == (4, True)


def test_an_ids_time_is_its_first_part_in_milliseconds() -> None:
    assert id_time("1733500000123-4") == 1733500000.123
    assert id_time("0-0") is None
    assert id_time(None) is None
