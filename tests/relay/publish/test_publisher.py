"""StreamPublisher's batching, ordering, retry and idempotency, against fakeredis.

fakeredis runs the real Lua script (through lupa), so these tests exercise
the same write path as production, only without a server process; faults are
injected with fakeredis's ``connected`` switch and by a client that loses
replies.  The same behaviours against a real, paused redis-server are in
tests/integration/test_catch.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Collection
from typing import Any

import fakeredis
import pytest
import redis.exceptions
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from redis.connection import Connection

from relay.common.metrics import CatcherMetrics
from relay.common.redis_protocol import CommandPipeline
from relay.common.stream import StreamKeys
from relay.publish.packing import pack_publish, record_args_python
from relay.publish.publisher import StreamPublisher
from relay.publish.script import (
    PUBLISH_SCRIPT,
    DeadLetterEntry,
    Entry,
    RecordEntry,
    script_args,
)
from tests.support.polling import async_wait_until
from tests.support.recording_flow import RecordingFlow
from tests.support.strategies import fuzz

KEYS = StreamKeys("logs")


class InterceptedPipeline(CommandPipeline):
    """The publisher's channel to Redis, with the test's hooks around each send and reply (its fault-injection seam)."""

    def __init__(self, redis: Any, hooks: PipelineHooks) -> None:
        super().__init__(redis)
        self.hooks = hooks

    async def send(self, packed: bytes | list[bytes]) -> None:
        assert isinstance(packed, list)
        await super().send(await self.hooks.before_send(packed))

    async def reply(self) -> object:
        await self.hooks.before_reply()
        return await self.hooks.after_reply(self, await super().reply())


class PipelineHooks:
    """No fault: what each hook does unless a test's subclass says otherwise."""

    async def before_send(self, packed: list[bytes]) -> list[bytes]:
        return packed

    async def before_reply(self) -> None:
        pass

    async def after_reply(self, pipe: CommandPipeline, reply: object) -> object:
        return reply

    def pipeline(self, redis: Any) -> CommandPipeline:
        """For StreamPublisher's ``pipeline``: a channel with these hooks."""
        return InterceptedPipeline(redis, self)


class LosingReplies(PipelineHooks):
    """Batches reach Redis and are applied; the replies numbered in ``lost`` (from 1, over all attempts)
    are then lost with the connection."""

    def __init__(self, lost: Collection[int]) -> None:
        self.lost = lost
        self.replies = 0

    async def after_reply(self, pipe: CommandPipeline, reply: object) -> object:
        self.replies += 1
        if self.replies in self.lost:
            await pipe.reset()  # as a reset connection would: the other replies are gone too
            raise redis.exceptions.ConnectionError("connection reset after the command ran")
        return reply


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
async def client(server: fakeredis.FakeServer) -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    client = fakeredis.FakeAsyncRedis(server=server)
    yield client
    await client.aclose()


def record(seq: int, conn: str = "c0") -> bytes:
    return json.dumps({"msg": f"record {seq}", "conn": conn, "seq": seq}).encode()


async def stream_records(client: Any, key: str = "logs") -> list[dict[str, Any]]:
    return [json.loads(fields[b"record"]) for _, fields in await client.xrange(key)]


async def run_until_published(publisher: StreamPublisher, expected: int, timeout: float = 10) -> None:
    task = asyncio.create_task(publisher.run())
    try:
        await async_wait_until(
            lambda: publisher.stats.records_published + publisher.stats.dead_letters_published >= expected,
            timeout=timeout,
            what=f"{expected} entries published",
        )
        publisher.close()
        await asyncio.wait_for(task, timeout)
    finally:
        task.cancel()


def make_publisher(client: Any, cls: type[StreamPublisher] = StreamPublisher, **kwargs: Any) -> StreamPublisher:
    options: dict[str, Any] = {"catcher_id": "test-catcher", "buffer_bytes": 64 * 1024 * 1024}
    options.update(kwargs)
    return cls(client, KEYS, **options)


async def test_records_are_published_in_order_in_batches(client: fakeredis.FakeAsyncRedis) -> None:
    publisher = make_publisher(client, batch_max_records=100)
    for seq in range(250):
        publisher.add_record(record(seq), "10.0.0.1:5000", "1700000000.000001")
    await run_until_published(publisher, 250)

    assert [r["seq"] for r in await stream_records(client)] == list(range(250))
    assert publisher.stats.batches_published == 3
    assert publisher.buffered == 0
    assert publisher.buffered_bytes == 0


@contextlib.asynccontextmanager
async def running(publisher: StreamPublisher) -> AsyncIterator[asyncio.Task[None]]:
    """``publisher.run()`` as a task, cancelled on the way out."""
    task = asyncio.create_task(publisher.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def add(publisher: StreamPublisher, seqs: range) -> None:
    for seq in seqs:
        publisher.add_record(record(seq), "10.0.0.1:5000", "1700000000.000001")


async def published(publisher: StreamPublisher, count: int, what: str) -> None:
    await async_wait_until(lambda: publisher.stats.records_published == count, timeout=10, what=what)


async def test_after_a_batch_records_linger_until_a_batch_is_full(client: fakeredis.FakeAsyncRedis) -> None:
    publisher = make_publisher(client, batch_max_records=10, linger=60)
    async with running(publisher):
        # After a quiet spell a record goes at once...
        add(publisher, range(1))
        await published(publisher, 1, "the first record")
        # ...and the records after it wait for company.
        add(publisher, range(1, 4))
        await async_wait_until(lambda: publisher.lingering, timeout=10, what="the partial batch lingering")
        assert await client.xlen("logs") == 1
        # A batch's worth wakes it long before the linger is over.
        add(publisher, range(4, 14))
        await published(publisher, 14, "a full batch")
        assert publisher.stats.batches_published == 3  # [0], [1..10], and [11..13] sent with it
        assert [r["seq"] for r in await stream_records(client)] == list(range(14))


class ArrivalsInFlight(PipelineHooks):
    """Records ``arrivals`` are added to ``publisher`` while the first batch is in flight (before its reply is read)."""

    def __init__(self, arrivals: range) -> None:
        self.arrivals = arrivals
        self.publisher: StreamPublisher | None = None

    async def before_reply(self) -> None:
        assert self.publisher is not None
        add(self.publisher, self.arrivals)
        self.arrivals = range(0)


@pytest.mark.parametrize("linger", [60, 0])
async def test_records_arriving_while_a_batch_is_in_flight_wait_for_the_linger(
    client: fakeredis.FakeAsyncRedis, linger: float
) -> None:
    arrivals = ArrivalsInFlight(range(10, 13))
    publisher = arrivals.publisher = make_publisher(
        client, batch_max_records=10, linger=linger, pipeline=arrivals.pipeline
    )
    add(publisher, range(10))
    async with running(publisher) as task:
        if linger:
            # The full batch went at once; the three behind it wait for company.
            await async_wait_until(lambda: publisher.lingering, timeout=10, what="the rest lingering")
            assert publisher.stats.batches_published == 1
            assert publisher.buffered == 3
        else:
            await published(publisher, 13, "13 records")
        # Closing (SIGTERM) sends what lingers at once.
        publisher.close()
        await asyncio.wait_for(task, 10)
        assert publisher.stats.batches_published == 2
        assert [r["seq"] for r in await stream_records(client)] == list(range(13))


async def test_a_partial_batch_is_sent_when_its_linger_is_over(client: fakeredis.FakeAsyncRedis) -> None:
    publisher = make_publisher(client, batch_max_records=10, linger=0.02)
    async with running(publisher):
        add(publisher, range(1))
        await published(publisher, 1, "the first record")
        add(publisher, range(1, 2))
        await published(publisher, 2, "the lingering one")
        assert publisher.stats.batches_published == 2


async def test_without_a_linger_each_turn_sends_what_is_buffered(client: fakeredis.FakeAsyncRedis) -> None:
    publisher = make_publisher(client, batch_max_records=10, linger=0)
    async with running(publisher):
        add(publisher, range(3))
        await published(publisher, 3, "the partial batch")
        assert not publisher.lingering
        assert publisher.stats.batches_published == 1


async def test_entry_fields_follow_the_documented_format(client: fakeredis.FakeAsyncRedis) -> None:
    publisher = make_publisher(client)
    publisher.add_record(b'{"msg":"hi"}', "[::1]:6000", "1700000000.250000")
    publisher.add_dead_letter(b"\x80\x01garbage", "undecodable pickle", "[::1]:6000", "1700000000.500000")
    await run_until_published(publisher, 2)

    ((_, entry),) = await client.xrange("logs")
    assert entry == {
        b"v": b"1",
        b"record": b'{"msg":"hi"}',
        b"client": b"[::1]:6000",
        b"catcher": b"test-catcher",
        b"received": b"1700000000.250000",
        b"seq": f"{publisher.producer_token}:1".encode(),
    }
    ((_, dead),) = await client.xrange(KEYS.dead_letters)
    assert dead == {
        b"v": b"1",
        b"reason": b"undecodable pickle",
        b"raw": b"\x80\x01garbage",
        b"client": b"[::1]:6000",
        b"catcher": b"test-catcher",
        b"received": b"1700000000.500000",
    }


async def test_a_batch_whose_reply_was_lost_is_not_added_twice(client: fakeredis.FakeAsyncRedis) -> None:
    publisher = make_publisher(client, batch_max_records=10, pipeline=LosingReplies({1, 2}).pipeline)
    for seq in range(25):
        publisher.add_record(record(seq), "c", "1")
    await run_until_published(publisher, 25)

    assert [r["seq"] for r in await stream_records(client)] == list(range(25))
    # The three batches went as one window.  Attempt 1 applied them and lost
    # the replies; attempt 2 was recognised as a repeat and lost its replies
    # too; attempt 3 reports all three as applied before.
    assert publisher.stats.redis_errors == 2
    assert publisher.stats.batches_deduplicated == 3
    assert publisher.stats.batches_published == 3


def publish_args(
    seq: int, *records: bytes, max_length: int = 0, policy: str = "block", pipelined: bool = False
) -> list[object]:
    """ARGV of the publish script for ``records`` (see relay.publish.script)."""
    batch: list[Entry] = [RecordEntry(record, "c", "1") for record in records]
    return list(script_args(batch, seq, "catcher", max_length, policy, pipelined=pipelined))


async def test_the_script_skips_a_sequence_number_it_has_applied(client: fakeredis.FakeAsyncRedis) -> None:
    keys = [KEYS.records, KEYS.dead_letters, KEYS.producer("p1")]
    once = b'{"msg":"once"}'
    assert await client.eval(PUBLISH_SCRIPT, 3, *keys, *publish_args(7, once)) == [1, 0, 0, 0]
    assert await client.eval(PUBLISH_SCRIPT, 3, *keys, *publish_args(7, once)) == [-1, 0, 0, 0]
    # An older batch of the same producer is a stale retry too.
    assert await client.eval(PUBLISH_SCRIPT, 3, *keys, *publish_args(6, once)) == [-1, 0, 0, 0]
    # Another producer's batch 7 is its own.
    other = [KEYS.records, KEYS.dead_letters, KEYS.producer("p2")]
    assert await client.eval(PUBLISH_SCRIPT, 3, *other, *publish_args(7, once)) == [1, 0, 0, 0]
    assert await client.xlen("logs") == 2


async def test_the_script_keeps_a_pipeline_in_order(client: fakeredis.FakeAsyncRedis) -> None:
    keys = [KEYS.records, KEYS.dead_letters, KEYS.producer("p")]
    r = [record(n) for n in range(6)]

    async def publish(seq: int, *records: bytes, **options: Any) -> object:
        return await client.eval(PUBLISH_SCRIPT, 3, *keys, *publish_args(seq, *records, **options))

    # Nothing applied yet: a batch pipelined behind batch 0 is refused, and not recorded.
    assert await publish(1, r[0], pipelined=True) == [-2, 0, 0, 0]
    # Batch 1 fills the stream and holds its last record back ...
    assert await publish(1, r[0], r[1], r[2], max_length=2) == [2, 0, 1, 0]
    # ... so batch 2, sent behind it, waits whole, even with room made meanwhile.
    await client.xtrim("logs", maxlen=0, approximate=False)
    assert await publish(2, r[3], r[4], max_length=2, pipelined=True) == [0, 0, 2, 0]
    # A retry of the pipeline (replies lost) learns what each batch held.
    assert await publish(1, r[0], r[1], r[2], max_length=2) == [-1, 0, 1, 0]
    assert await publish(2, r[3], r[4], max_length=2, pipelined=True) == [-1, 0, 2, 0]
    # A batch behind one that was never applied (4 behind 3) is refused.
    assert await publish(4, r[5], pipelined=True) == [-2, 0, 0, 0]
    # The held records go first, in the next window.
    assert await publish(3, r[2], r[3], r[4], max_length=5) == [3, 0, 0, 0]
    assert await publish(4, r[5], max_length=5, pipelined=True) == [1, 0, 0, 0]
    assert [entry["seq"] for entry in await stream_records(client)] == [2, 3, 4, 5]


async def test_at_max_length_block_holds_the_rest_and_shed_drops_it(client: fakeredis.FakeAsyncRedis) -> None:
    keys = [KEYS.records, KEYS.dead_letters, KEYS.producer("p")]
    records = [record(n) for n in range(7)]
    assert await client.eval(PUBLISH_SCRIPT, 3, *keys, *publish_args(1, *records[:2], max_length=3)) == [2, 0, 0, 0]
    # block: what fits is written, the rest held (to be sent again); a repeat reports the same.
    assert await client.eval(PUBLISH_SCRIPT, 3, *keys, *publish_args(2, *records[2:4], max_length=3)) == [1, 0, 1, 0]
    assert await client.eval(PUBLISH_SCRIPT, 3, *keys, *publish_args(2, *records[2:4], max_length=3)) == [-1, 0, 1, 0]
    # Full: nothing written, all held.
    assert await client.eval(PUBLISH_SCRIPT, 3, *keys, *publish_args(3, records[3], max_length=3)) == [0, 0, 1, 0]
    await client.xtrim("logs", maxlen=1, approximate=False)
    reply = await client.eval(PUBLISH_SCRIPT, 3, *keys, *publish_args(4, *records[3:], max_length=3, policy="shed"))
    assert reply == [2, 2, 0, 0]
    assert [r["seq"] for r in await stream_records(client)] == [2, 3, 4]


async def test_shed_policy_counts_what_it_drops(client: fakeredis.FakeAsyncRedis) -> None:
    publisher = make_publisher(client, batch_max_records=10, max_stream_length=25, full_policy="shed")
    for seq in range(40):
        publisher.add_record(record(seq), "c", "1")
    task = asyncio.create_task(publisher.run())
    await async_wait_until(lambda: publisher.buffered == 0, what="all handled")
    publisher.close()
    await asyncio.wait_for(task, 10)
    assert [r["seq"] for r in await stream_records(client)] == list(range(25))
    assert publisher.stats.records_shed == 15
    assert publisher.stats.records_published == 25


@pytest.mark.parametrize(
    "batch_max_records",
    [
        pytest.param(100, id="a batch larger than the whole limit gets through part by part"),
        pytest.param(7, id="a window of batches filling the stream midway keeps its order"),
    ],
)
async def test_block_policy_holds_records_until_the_stream_has_room(
    client: fakeredis.FakeAsyncRedis, batch_max_records: int
) -> None:
    publisher = make_publisher(client, batch_max_records=batch_max_records, max_stream_length=20)
    for seq in range(60):
        publisher.add_record(record(seq), "c", "1")
    task = asyncio.create_task(publisher.run())
    try:
        await async_wait_until(lambda: publisher.stats.redis_errors >= 2, what="the stream full")
        assert await client.xlen("logs") == 20
        assert publisher.buffered == 40  # held, not dropped
        written: list[int] = []
        for _ in range(3):  # consumers catch up and trim, three times over
            written += [r["seq"] for r in await stream_records(client)]
            await client.xtrim("logs", maxlen=0, approximate=False)
            if len(written) < 60:
                await async_wait_until(lambda: client.xlen("logs"), what="the held records written after the trim")
    finally:
        publisher.close()
        await asyncio.wait_for(task, 10)
    assert written == list(range(60))
    assert publisher.stats.records_shed == 0
    assert publisher.stats.records_published == 60


async def test_outage_buffers_retries_and_is_logged_once(
    server: fakeredis.FakeServer, client: fakeredis.FakeAsyncRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="logrelay.publisher")
    server.connected = False
    publisher = make_publisher(client, batch_max_records=10)
    task = asyncio.create_task(publisher.run())
    try:
        for seq in range(100):
            publisher.add_record(record(seq), "c", "1")
        await async_wait_until(lambda: publisher.stats.redis_errors >= 3, what="several failed attempts")
        assert publisher.buffered == 100
        server.connected = True
        await async_wait_until(lambda: publisher.stats.records_published == 100, what="records after outage")
    finally:
        publisher.close()
        await asyncio.wait_for(task, 10)

    assert [r["seq"] for r in await stream_records(client)] == list(range(100))
    outage_lines = [r for r in caplog.records if "cannot publish to Redis" in r.getMessage()]
    assert len(outage_lines) == 1
    assert any("Redis is back" in r.getMessage() for r in caplog.records)


async def test_full_buffer_pauses_reading_and_resumes_at_half(
    server: fakeredis.FakeServer, client: fakeredis.FakeAsyncRedis
) -> None:
    flow = RecordingFlow()
    entry = record(0)
    server.connected = False
    publisher = make_publisher(client, buffer_bytes=20 * 1024, batch_max_records=5, flow=flow)
    task = asyncio.create_task(publisher.run())
    try:
        sent = 0
        while not publisher.paused:
            publisher.add_record(entry, "c", "1")
            sent += 1
            assert sent < 10_000, "the buffer never reported full"
        assert flow.events == ["pause"]
        assert publisher.buffered_bytes >= 20 * 1024
        # Adding past the limit is still accepted: nothing read is ever dropped.
        publisher.add_record(entry, "c", "1")
        sent += 1
        server.connected = True
        await async_wait_until(lambda: flow.events == ["pause", "resume"], what="resume")
        assert publisher.buffered_bytes <= 10 * 1024
        await async_wait_until(lambda: publisher.stats.records_published == sent, what="all published")
    finally:
        publisher.close()
        await asyncio.wait_for(task, 10)
    assert await client.xlen("logs") == sent


class SecondBatchRefusedOnce(PipelineHooks):
    """The first window of three or more batches names, for its second batch, a script Redis lacks."""

    refused = False

    async def before_send(self, packed: list[bytes]) -> list[bytes]:
        if not self.refused and len(packed) >= 3:
            self.refused = True
            sha = packed[0].split(b"\r\n")[4]  # *N, $7, EVALSHA, $40, the script's SHA1
            return [packed[0], packed[1].replace(sha, b"0" * len(sha), 1), *packed[2:]]
        return packed


async def test_a_batch_failing_inside_a_window_keeps_the_later_ones_behind_it(
    client: fakeredis.FakeAsyncRedis,
) -> None:
    refusing = SecondBatchRefusedOnce()
    publisher = make_publisher(client, batch_max_records=10, pipeline=refusing.pipeline)
    for seq in range(45):
        publisher.add_record(record(seq), "c", "1")
    await run_until_published(publisher, 45)
    assert refusing.refused
    # Batch 2 failed (NOSCRIPT); batches 3-5 were refused by the script
    # rather than written ahead of it; all were sent again, in order.
    assert [r["seq"] for r in await stream_records(client)] == list(range(45))
    assert publisher.stats.batches_published == 5
    assert publisher.stats.batches_deduplicated == 0


class Recording(PipelineHooks):
    """Notes each write (how many batches) and each reply read, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def before_send(self, packed: list[bytes]) -> list[bytes]:
        self.events.append(f"send {len(packed)}")
        return packed

    async def before_reply(self) -> None:
        self.events.append("reply")


async def test_each_confirmed_batch_makes_room_for_the_next_behind_those_in_flight(
    client: fakeredis.FakeAsyncRedis,
) -> None:
    recording = Recording()
    publisher = make_publisher(client, batch_max_records=10, window=4, pipeline=recording.pipeline)
    for seq in range(75):
        publisher.add_record(record(seq), "c", "1")
    await run_until_published(publisher, 75)
    # Four batches, then one more behind the three still in flight after
    # each reply, until the eighth (the last, 5 records); then the rest of the replies.
    assert recording.events == [
        "send 4", "reply", "send 1", "reply", "send 1", "reply", "send 1", "reply", "send 1",
        "reply", "reply", "reply", "reply",
    ]  # fmt: skip
    assert [r["seq"] for r in await stream_records(client)] == list(range(75))
    assert publisher.stats.batches_published == 8


@pytest.mark.parametrize("lost", range(1, 7))
async def test_a_connection_lost_anywhere_in_the_sliding_window_doubles_and_drops_nothing(
    client: fakeredis.FakeAsyncRedis, lost: int
) -> None:
    # Window 2, batches of 10: by the third reply the batches in flight were
    # sent behind ones already confirmed (pipelined), and are sent again so.
    publisher = make_publisher(client, batch_max_records=10, window=2, pipeline=LosingReplies({lost}).pipeline)
    for seq in range(55):
        publisher.add_record(record(seq), "c", "1")
    await run_until_published(publisher, 55)
    assert [r["seq"] for r in await stream_records(client)] == list(range(55))
    assert publisher.stats.redis_errors == 1
    assert publisher.stats.batches_published == 6
    # The batch whose reply was lost, and the one in flight behind it, ran before the loss.
    assert publisher.stats.batches_deduplicated == (2 if lost < 6 else 1)


class SlowRedis(PipelineHooks):
    """Redis takes its time: each window waits for ``answer`` to be set."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.working = asyncio.Event()

    async def before_send(self, packed: list[bytes]) -> list[bytes]:
        self.working.set()
        await self.answer.wait()
        return packed


async def test_reading_stays_about_one_window_ahead_of_a_slow_redis(client: fakeredis.FakeAsyncRedis) -> None:
    flow = RecordingFlow()
    window_bytes = 2 * 4096  # window 2 x batch_max_bytes 4 KiB
    slow = SlowRedis()
    publisher = make_publisher(client, batch_max_bytes=4096, window=2, flow=flow, pipeline=slow.pipeline)
    entry = record(0)
    task = asyncio.create_task(publisher.run())
    try:
        publisher.add_record(entry, "c", "1")
        await asyncio.wait_for(slow.working.wait(), 10)  # Redis has a (one-record) window
        sent = 1
        while not publisher.paused:
            publisher.add_record(entry, "c", "1")
            sent += 1
            assert sent < 10_000, "reading never paused"
        # Paused by the read-ahead, far below the 64 MiB buffer: load, not a full buffer.
        assert not publisher.full
        assert window_bytes <= publisher.buffered_bytes < 2 * window_bytes
        assert (publisher.stats.read_ahead_pauses, publisher.stats.backpressure_pauses) == (1, 0)
        slow.answer.set()
        await async_wait_until(lambda: publisher.stats.records_published == sent, what="all published")
        assert flow.events == ["pause", "resume"]
    finally:
        publisher.close()
        await asyncio.wait_for(task, 10)
    assert await client.xlen("logs") == sent


async def test_script_flushed_by_a_restart_is_loaded_again(client: fakeredis.FakeAsyncRedis) -> None:
    publisher = make_publisher(client, batch_max_records=1)
    publisher.add_record(record(0), "c", "1")
    await run_until_published(publisher, 1)
    await client.script_flush()
    publisher.add_record(record(1), "c", "1")
    await run_until_published(publisher, 2)
    assert [r["seq"] for r in await stream_records(client)] == [0, 1]


async def test_wrong_key_type_writes_nothing_and_retries_until_fixed(client: fakeredis.FakeAsyncRedis) -> None:
    await client.set(KEYS.dead_letters, "not a stream")
    publisher = make_publisher(client)
    publisher.add_record(record(0), "c", "1")
    publisher.add_dead_letter(b"raw", "bad", "c", "1")
    task = asyncio.create_task(publisher.run())
    try:
        await async_wait_until(lambda: publisher.stats.redis_errors >= 2, what="WRONGTYPE failures")
        # The record was not written alone: a later retry would double it.
        assert await client.xlen("logs") == 0
        await client.delete(KEYS.dead_letters)
        await async_wait_until(lambda: publisher.buffered == 0, what="published after the fix")
    finally:
        publisher.close()
        await asyncio.wait_for(task, 10)
    assert await client.xlen("logs") == 1
    assert await client.xlen(KEYS.dead_letters) == 1


async def test_one_oversized_entry_is_still_sent(client: fakeredis.FakeAsyncRedis) -> None:
    publisher = make_publisher(client, batch_max_bytes=1024)
    big = json.dumps({"msg": "x" * 10_000, "seq": 0}).encode()
    publisher.add_record(big, "c", "1")
    publisher.add_record(record(1), "c", "1")
    await run_until_published(publisher, 2)
    assert [r["seq"] for r in await stream_records(client)] == [0, 1]
    assert publisher.stats.batches_published == 2


def test_stream_keys_share_a_hash_slot() -> None:
    from redis.crc import key_slot

    for stream in ("logrelay", "app:logs", "{tenant}:logs"):
        keys = StreamKeys(stream)
        slot = key_slot(keys.records.encode())
        assert key_slot(keys.dead_letters.encode()) == slot
        assert key_slot(keys.producer("host-1:abc").encode()) == slot


def test_the_packed_command_is_what_redis_py_would_send() -> None:
    batch = [
        RecordEntry(b'{"msg":"a"}', "10.0.0.1:5000", "1700000000.000001"),
        DeadLetterEntry(b"\x80\x01bad", "undecodable", "10.0.0.1:5000", "1700000000.000001"),
        RecordEntry('{"msg":"Grüße \\r\\n"}'.encode(), "10.0.0.1:5000", "1700000000.000001"),
        RecordEntry(b"{}", "[::1]:6000", "1700000000.000002"),
    ]
    keys = [KEYS.records, KEYS.dead_letters, KEYS.producer("p")]
    args = script_args(batch, 42, "catcher-1", 1000, "shed")
    expected = b"".join(Connection().pack_command("EVALSHA", "f" * 40, 3, *keys, *args))
    assert pack_publish("f" * 40, keys, batch, 42, "catcher-1", 1000, "shed") == expected


entries_strategy = st.lists(
    st.one_of(
        st.builds(RecordEntry, st.binary(max_size=40), st.text(max_size=12), st.text(max_size=20)),
        st.builds(DeadLetterEntry, st.binary(max_size=20), st.text(max_size=10), st.text(max_size=5), st.text()),
    ),
    max_size=30,
)


@fuzz(300)
@given(entries_strategy)
def test_records_packed_in_c_are_what_the_python_reference_packs(batch: list[Entry]) -> None:
    from relay.publish import packing

    if packing.IMPLEMENTATION != "c":
        pytest.skip("the C packer is not built here")
    from relay.publish import _packing  # type: ignore[attr-defined]

    assert _packing.record_args(batch) == record_args_python(batch)
    keys = [KEYS.records, KEYS.dead_letters, KEYS.producer("p")]
    expected = b"".join(
        Connection().pack_command("EVALSHA", "f" * 40, 3, *keys, *script_args(batch, 1, "c", 0, "block"))
    )
    assert pack_publish("f" * 40, keys, batch, 1, "c", 0, "block") == expected


@pytest.mark.parametrize("length", [0, 9, 10, 99, 100, 999, 1000, 100_000])
def test_records_of_every_length_digit_count_are_packed_exactly(length: int) -> None:
    # The bulk strings' lengths are written digit by digit in C.
    from relay.publish import packing

    if packing.IMPLEMENTATION != "c":
        pytest.skip("the C packer is not built here")
    from relay.publish import _packing  # type: ignore[attr-defined]

    batch: list[Entry] = [RecordEntry(b"r" * length, "c" * (length % 13), "1.5")]
    assert _packing.record_args(batch) == record_args_python(batch)
    assert _packing.record_args(batch)[0].startswith(b"$%d\r\n%b\r\n" % (length, b"r" * length))


def test_an_unusual_batch_is_left_to_the_python_packer() -> None:
    from relay.publish import packing

    if packing.IMPLEMENTATION != "c":
        pytest.skip("the C packer is not built here")
    from relay.publish import _packing  # type: ignore[attr-defined]

    assert _packing.record_args([(b"rec", b"not a str", "1")]) is None
    assert _packing.record_args([("not bytes", "c", "1")]) is None
    assert _packing.record_args([[b"a list", "c", "1"]]) is None


async def test_each_confirmed_batch_is_timed_once_from_its_oldest_record(client: fakeredis.FakeAsyncRedis) -> None:
    registry = CollectorRegistry()
    publisher = make_publisher(client, batch_max_records=50, metrics=CatcherMetrics(registry))
    received = time.time() - 2.0  # the oldest record of the first batch arrived two seconds ago
    publisher.add_record(record(0), "c", f"{received:.6f}")
    for seq in range(1, 250):
        publisher.add_record(record(seq), "c", f"{time.time():.6f}")
    publisher.add_record(record(250), "c", "not a time")  # a caller's own label: not timed, not a failure
    await run_until_published(publisher, 251)

    def sample(name: str) -> float:
        value = registry.get_sample_value(name)
        assert value is not None, name
        return value

    assert publisher.stats.batches_published == 6
    assert sample("logrelay_catcher_publish_seconds_count") == 6
    assert 0 <= sample("logrelay_catcher_publish_seconds_sum") < 10
    # Once per batch, from its oldest record; the last batch's is "not a time".
    assert sample("logrelay_catcher_record_latency_seconds_count") == 5
    assert 2.0 <= sample("logrelay_catcher_record_latency_seconds_sum") < 2.0 + 10
