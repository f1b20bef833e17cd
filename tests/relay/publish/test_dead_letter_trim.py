"""The publish script keeps the dead-letter stream near its bound, on a real Redis, and says exactly how many
letters it removed; the publisher counts them."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from relay.common.stream import StreamKeys
from relay.publish.publisher import StreamPublisher
from relay.publish.script import PUBLISH_SCRIPT, DeadLetterEntry, RecordEntry, parse_result, script_args
from tests.support.polling import async_wait_until

KEYS = StreamKeys("logs")
#: Over a stream node's 4 KiB (stream-node-max-bytes): each letter closes its node, so "~" trims to the letter.
RAW = b"\x80\x04" + b"x" * 5000


def letter(number: int) -> DeadLetterEntry:
    return DeadLetterEntry(RAW, f"refused {number}", "10.0.0.1:5000", "1700000000.000001")


async def publish(redis: Redis, seq: int, batch: list[DeadLetterEntry | RecordEntry], bound: int) -> object:
    args = script_args(batch, seq, "catcher", 0, "block", dead_max_length=bound)  # type: ignore[arg-type]
    return await redis.eval(PUBLISH_SCRIPT, 3, KEYS.records, KEYS.dead_letters, KEYS.producer("p"), *args)  # type: ignore[misc]


async def test_each_batch_trims_the_oldest_letters_and_reports_how_many(redis: Redis) -> None:
    for seq in range(1, 6):
        await publish(redis, seq, [letter(4 * seq + n) for n in range(4)], bound=10)
    length = await redis.xlen(KEYS.dead_letters)
    assert 10 <= length <= 12
    record = RecordEntry(b'{"msg":"ok"}', "c", "1")
    reply = parse_result(await publish(redis, 6, [record, letter(24), letter(25)], bound=10))
    after = await redis.xlen(KEYS.dead_letters)
    assert reply.dead_trimmed == length + 2 - after > 0
    # The newest letters stay, the oldest went.
    reasons = [fields[b"reason"] for _, fields in await redis.xrange(KEYS.dead_letters)]
    assert reasons[-1] == b"refused 25"
    assert b"refused 4" not in reasons
    assert await redis.xlen(KEYS.records) == 1


async def test_no_bound_trims_nothing_and_a_repeated_batch_trims_nothing(redis: Redis) -> None:
    for seq in range(1, 4):
        assert parse_result(await publish(redis, seq, [letter(n) for n in range(10)], bound=0)).dead_trimmed == 0
    assert await redis.xlen(KEYS.dead_letters) == 30
    # A batch applied before (its reply lost) is not applied again: nothing added, nothing trimmed.
    assert await publish(redis, 3, [letter(0)], bound=5) == [-1, 0, 0, 0]
    assert await redis.xlen(KEYS.dead_letters) == 30


async def test_the_publisher_counts_what_the_bound_trimmed(redis: Redis) -> None:
    publisher = StreamPublisher(redis, KEYS, catcher_id="c", buffer_bytes=1 << 26, dead_letter_max_length=5)
    task = asyncio.create_task(publisher.run())
    try:
        for number in range(40):
            publisher.add_dead_letter(RAW, f"refused {number}", "c", "1")
            # One letter per batch: a trim after each.
            sent = number + 1
            await async_wait_until(
                lambda sent=sent: publisher.stats.dead_letters_published == sent, timeout=20, what="sent"
            )
        publisher.close()
        await asyncio.wait_for(task, 20)
    finally:
        task.cancel()
    length = await redis.xlen(KEYS.dead_letters)
    assert 5 <= length <= 7
    assert publisher.stats.dead_letters_trimmed == 40 - length
