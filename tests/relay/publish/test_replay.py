"""The replay script on a real redis-server: the letter's removal and the record's addition, atomic and once."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from relay.common.stream import RECORD_FIELDS_WITHOUT_SEQ, StreamKeys
from relay.publish.replay import ReplayOutcome, replay_entry

KEYS = StreamKeys()
VALUES = [b"1", b'{"msg":"again"}', b"10.0.0.7:51234", b"catcher-a-1", b"1700000000.25"]
FIELDS = list(zip(RECORD_FIELDS_WITHOUT_SEQ, VALUES, strict=True))


async def test_a_letter_replays_once_fields_in_schema_order(redis: Redis) -> None:
    letter_id = await redis.xadd(KEYS.dead_letters, {"v": "1", "reason": "r", "raw": b"\x80"})
    assert await replay_entry(redis, KEYS, letter_id, FIELDS) is ReplayOutcome.REPLAYED
    # Again (a rerun, or a retry whose first reply was lost): the letter is gone, nothing added.
    assert await replay_entry(redis, KEYS, letter_id, FIELDS) is ReplayOutcome.GONE
    entries = await redis.xrange(KEYS.records)
    assert len(entries) == 1
    assert list(entries[0][1].items()) == [(name.encode(), value) for name, value in FIELDS]
    assert await redis.xlen(KEYS.dead_letters) == 0


async def test_a_full_records_stream_changes_nothing(redis: Redis) -> None:
    await redis.xadd(KEYS.records, {"v": "1"})
    await redis.xadd(KEYS.records, {"v": "1"})
    letter_id = await redis.xadd(KEYS.dead_letters, {"v": "1", "reason": "r", "raw": b"\x80"})
    assert await replay_entry(redis, KEYS, letter_id, FIELDS, max_length=2) is ReplayOutcome.STREAM_FULL
    assert await redis.xlen(KEYS.records) == 2
    assert await redis.xlen(KEYS.dead_letters) == 1
    assert await replay_entry(redis, KEYS, letter_id, FIELDS, max_length=3) is ReplayOutcome.REPLAYED
    assert await redis.xlen(KEYS.records) == 3


async def test_a_records_key_of_another_type_fails_before_the_letter_is_removed(redis: Redis) -> None:
    await redis.set(KEYS.records, "not a stream")
    letter_id = await redis.xadd(KEYS.dead_letters, {"v": "1", "reason": "r", "raw": b"\x80"})
    with pytest.raises(Exception, match="WRONGTYPE"):
        await replay_entry(redis, KEYS, letter_id, FIELDS)
    assert await redis.xlen(KEYS.dead_letters) == 1


async def test_the_script_is_loaded_again_after_a_script_flush(redis: Redis) -> None:
    first = await redis.xadd(KEYS.dead_letters, {"v": "1", "reason": "r", "raw": b"\x80"})
    second = await redis.xadd(KEYS.dead_letters, {"v": "1", "reason": "r", "raw": b"\x80"})
    assert await replay_entry(redis, KEYS, first, FIELDS) is ReplayOutcome.REPLAYED
    await redis.script_flush()
    assert await replay_entry(redis, KEYS, second, FIELDS) is ReplayOutcome.REPLAYED
    assert await redis.xlen(KEYS.records) == 2
