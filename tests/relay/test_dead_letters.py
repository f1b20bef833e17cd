"""relay.dead_letters on a real redis-server: paging, kinds, decoding again, replaying once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from relay.common.stream import RECORD_FIELDS_WITHOUT_SEQ, StreamKeys
from relay.dead_letters import (
    PAGE_SIZE,
    DeadLetter,
    Kind,
    Refused,
    ReplayResult,
    dead_letters,
    decode_frame,
    delete_range,
    fetch,
    parse_before,
    record_fields,
    replay,
    valid_id,
)
from relay.decode.frames import DecodeLimits, FrameDecoder
from tests.support.amplifiers import AMPLIFIERS, frame
from tests.support.dead_letters import big_frame, consumer_dead_letter, publish_dead_letter, refused
from tests.support.entries import entry_for, make_record
from tests.support.realredis import RedisServer

KEYS = StreamKeys()
RAISED = DecodeLimits(max_decoded_bytes=4 << 20)


@pytest.fixture
def sync_client(redis_server: RedisServer) -> sync_redis.Redis:
    return redis_server.client()


async def _all(results: AsyncIterator[ReplayResult]) -> list[ReplayResult]:
    return [result async for result in results]


def test_decode_frame_is_the_catchers_record_under_the_limits_given() -> None:
    bad = refused(big_frame())
    assert "maximum decoded size" in bad.reason
    (expected,) = FrameDecoder(RAISED).feed(big_frame())
    assert isinstance(expected, bytes)
    assert decode_frame(bad.raw, RAISED) == expected
    assert json.loads(expected)["msg"] == "x" * 200_000
    still = decode_frame(bad.raw, DecodeLimits(max_decoded_bytes=64 * 1024))
    assert isinstance(still, Refused)
    assert "maximum decoded size" in still.reason
    too_large = decode_frame(bad.raw, DecodeLimits(max_frame_bytes=1000))
    assert isinstance(too_large, Refused)
    assert "max-frame-bytes" in too_large.reason


@pytest.mark.parametrize("case", [case for case in AMPLIFIERS if case.refused], ids=lambda case: case.name)
def test_hostile_frames_stay_refused_under_raised_limits(case: object) -> None:
    raw = case.build()  # type: ignore[attr-defined]
    result = decode_frame(raw, DecodeLimits(max_frame_bytes=4 << 20, max_decoded_bytes=64 << 20, max_depth=100))
    assert isinstance(result, Refused), f"{case.name} decoded after all"  # type: ignore[attr-defined]


async def test_kinds_and_record_fields(redis: Redis, sync_client: sync_redis.Redis) -> None:
    catcher_id = publish_dead_letter(sync_client, refused(big_frame()))
    original = entry_for(make_record("broken %s"))
    consumer_id = consumer_dead_letter(sync_client, original)
    odd_id = await redis.xadd(KEYS.dead_letters, {"v": "1", "reason": "who knows"})
    letters = [letter async for letter in dead_letters(redis, KEYS.dead_letters)]
    assert [letter.id.encode() for letter in letters] == [catcher_id, consumer_id, odd_id]
    catcher, consumer, odd = letters
    assert (catcher.kind, consumer.kind, odd.kind) == (Kind.CATCHER, Kind.CONSUMER, Kind.UNKNOWN)
    assert catcher.client == "10.0.0.7:51234"
    assert catcher.time == "2023-11-14T22:13:20.250000Z"
    assert catcher.size == len(refused(big_frame()).raw)

    fields = record_fields(catcher, RAISED)
    assert not isinstance(fields, Refused)
    (expected,) = FrameDecoder(RAISED).feed(big_frame())
    assert fields == [
        ("v", b"1"),
        ("record", expected),
        ("client", b"10.0.0.7:51234"),
        ("catcher", b"catcher-a-1"),
        ("received", b"1700000000.250000"),
    ]
    assert record_fields(consumer, RAISED) == [(name, original[name.encode()]) for name in RECORD_FIELDS_WITHOUT_SEQ]
    assert isinstance(record_fields(odd, RAISED), Refused)


async def test_replay_once_refused_stay_and_a_second_run_adds_nothing(
    redis: Redis, sync_client: sync_redis.Redis
) -> None:
    good = publish_dead_letter(sync_client, refused(big_frame()))
    attack = next(case for case in AMPLIFIERS if case.refused)
    hostile = publish_dead_letter(sync_client, refused(frame(attack.build()), DecodeLimits()), seq=2)
    for _ in range(2):
        results = await _all(replay(redis, KEYS, dead_letters(redis, KEYS.dead_letters), RAISED))
        assert await redis.xlen(KEYS.records) == 1
        assert await fetch(redis, KEYS.dead_letters, good.decode()) is None
        assert await fetch(redis, KEYS.dead_letters, hostile.decode()) is not None
    assert [result.outcome for result in results] == ["refused"]


async def test_dry_run_writes_nothing(redis: Redis, sync_client: sync_redis.Redis) -> None:
    publish_dead_letter(sync_client, refused(big_frame()))
    results = await _all(replay(redis, KEYS, dead_letters(redis, KEYS.dead_letters), RAISED, dry_run=True))
    assert [result.outcome for result in results] == ["would replay"]
    assert await redis.xlen(KEYS.records) == 0
    assert await redis.xlen(KEYS.dead_letters) == 1


async def test_a_letter_replayed_elsewhere_meanwhile_is_gone_and_adds_nothing(
    redis: Redis, sync_client: sync_redis.Redis
) -> None:
    letter_id = publish_dead_letter(sync_client, refused(big_frame()))
    letter = await fetch(redis, KEYS.dead_letters, letter_id.decode())
    assert letter is not None
    await redis.xdel(KEYS.dead_letters, letter_id)

    async def one() -> AsyncIterator[DeadLetter]:
        yield letter

    assert [result.outcome for result in await _all(replay(redis, KEYS, one(), RAISED))] == ["gone"]
    assert await redis.xlen(KEYS.records) == 0


async def test_paging_reads_every_letter_once_across_pages_and_limits(redis: Redis) -> None:
    total = PAGE_SIZE * 2 + 7
    ids = [await redis.xadd(KEYS.dead_letters, {"v": "1", "reason": str(n)}) for n in range(total)]
    seen = [letter.id async for letter in dead_letters(redis, KEYS.dead_letters)]
    assert seen == [entry_id.decode() for entry_id in ids]
    limited = [letter.id async for letter in dead_letters(redis, KEYS.dead_letters, limit=PAGE_SIZE + 3)]
    assert limited == seen[: PAGE_SIZE + 3]
    middle = PAGE_SIZE + PAGE_SIZE // 2  # inside the second page
    upto = [letter.id async for letter in dead_letters(redis, KEYS.dead_letters, end=seen[middle])]
    assert upto == seen[: middle + 1]
    assert await delete_range(redis, KEYS.dead_letters, parse_before(seen[middle - 3])) == middle - 3
    assert [letter.id async for letter in dead_letters(redis, KEYS.dead_letters)] == seen[middle - 3 :]


def test_parse_before() -> None:
    assert parse_before("1700000000000-5") == "(1700000000000-5"
    assert parse_before("1700000000000") == "(1700000000000-0"
    assert parse_before("2023-11-14T22:13:20Z") == "(1700000000000-0"
    assert parse_before("2023-11-14T22:13:20") == "(1700000000000-0"
    with pytest.raises(ValueError, match="not a dead letter id or an ISO 8601 time"):
        parse_before("yesterday")


def test_ids_beyond_64_bits_are_not_ids() -> None:
    assert valid_id("18446744073709551615-18446744073709551615")
    assert not valid_id("18446744073709551616-0")
    assert not valid_id("1-18446744073709551616")
    with pytest.raises(ValueError, match="not a dead letter id"):
        parse_before("18446744073709551616")


async def test_purging_before_the_first_possible_id_removes_nothing(redis: Redis) -> None:
    await redis.xadd(KEYS.dead_letters, {"v": "1", "reason": "r"})
    for before in ("0", "0-0", "1969-12-31T00:00:00Z"):
        assert await delete_range(redis, KEYS.dead_letters, parse_before(before)) == 0
    assert await redis.xlen(KEYS.dead_letters) == 1
