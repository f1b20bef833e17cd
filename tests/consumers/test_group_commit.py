"""Group commit: a batch's lines reach the file while the batch before is fsynced; none is acknowledged before a sync
covers it; what waits for a sync is bounded; a failed fsync writes the batches not synced again."""

from __future__ import annotations

import asyncio
import calendar
import errno
import json
import logging
import os
import threading
from collections.abc import Mapping

import pytest

from consumers import group_commit
from consumers.checkpoint import read_checkpoint
from consumers.file_consumer import UNSYNCED_BATCHES, FileConsumer
from consumers.file_sink import FsyncPolicy
from consumers.rotation import RotationPolicy, RotationSettings
from consumers.segments import list_segments
from tests.support.file_consumers import ConsumerFactory, HeldFsync, written
from tests.support.polling import async_wait_until


async def read_new(consumer: FileConsumer, first: int, count: int) -> list[object]:
    """Add ``count`` records to the stream and read them through the consumer's group: pending for it."""
    stream = consumer.settings.keys.records
    for n in range(first, first + count):
        await consumer._redis.xadd(stream, {b"v": b"1", b"record": b'{"n":%d}' % n, b"client": b"c", b"received": b"1"})
    await consumer.reader.ensure_group()
    items = await consumer.reader.new()
    assert len(items) == count
    return list(items)


async def pending(consumer: FileConsumer) -> int:
    info = await consumer._redis.xpending(consumer.settings.keys.records, consumer.settings.group)
    return int(info["pending"])


async def test_the_next_batch_reaches_the_file_while_the_one_before_is_fsynced(
    consumer: FileConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsync = HeldFsync()
    monkeypatch.setattr(os, "fsync", fsync)
    await consumer._commit(consumer.renderer.render_items(await read_new(consumer, 0, 5)))  # type: ignore[arg-type]
    assert await asyncio.to_thread(fsync.entered.wait, 10), "the first batch's sync never started"
    second = consumer.renderer.render_items(await read_new(consumer, 5, 5))  # type: ignore[arg-type]
    await asyncio.wait_for(consumer._commit(second), 10)  # not waiting for the held fsync

    # Both batches are in the file for readers; neither is durable, so none is checkpointed or acknowledged.
    assert written(consumer) == list(range(10))
    assert read_checkpoint(consumer.sink.checkpoint_path) == (0, consumer.sink.checkpoint)
    assert consumer.sink.checkpoint.offset == 0
    assert await pending(consumer) == 10
    assert consumer.stats.entries_acked == 0

    fsync.release.set()
    await consumer.commits.drained()
    assert await pending(consumer) == 0
    found = read_checkpoint(consumer.sink.checkpoint_path)
    assert found is not None
    assert found[1].offset == consumer.settings.output.stat().st_size
    assert written(consumer) == list(range(10))


async def test_writes_wait_once_a_bounded_number_of_entries_wait_for_a_sync(
    consumer_factory: ConsumerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = await consumer_factory(batch_size=2)
    fsync = HeldFsync()
    monkeypatch.setattr(os, "fsync", fsync)
    room = UNSYNCED_BATCHES * 2
    for first in range(0, room, 2):
        await consumer._commit(consumer.renderer.render_items(await read_new(consumer, first, 2)))  # type: ignore[arg-type]
    assert await asyncio.to_thread(fsync.entered.wait, 10)
    assert written(consumer) == list(range(room))

    one_more = asyncio.create_task(consumer._commit(consumer.renderer.render_items(await read_new(consumer, room, 2))))  # type: ignore[arg-type]
    done, _ = await asyncio.wait({one_more}, timeout=0.5)
    assert not done, "a write went ahead with the sync stalled and the bound reached"
    assert written(consumer) == list(range(room))

    fsync.release.set()
    await asyncio.wait_for(one_more, 10)
    await consumer.commits.drained()
    assert written(consumer) == list(range(room + 2))
    assert await pending(consumer) == 0


async def test_a_failed_fsync_writes_the_batches_not_yet_synced_again(
    consumer: FileConsumer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The write-back fails and the kernel drops the dirty pages: a second
    # fsync would "succeed" over a hole, so the batches are written again.
    fsync = HeldFsync(held=False, lose_first=0)
    monkeypatch.setattr(os, "fsync", fsync)
    caplog.set_level(logging.INFO, "logrelay.consumer")
    await consumer._commit(consumer.renderer.render_items(await read_new(consumer, 0, 5)))  # type: ignore[arg-type]
    await consumer._commit(consumer.renderer.render_items(await read_new(consumer, 5, 5)))  # type: ignore[arg-type]
    await asyncio.wait_for(consumer.commits.drained(), 30)

    assert written(consumer) == list(range(10))
    assert consumer.sink.checkpoint.offset == consumer.settings.output.stat().st_size
    assert await pending(consumer) == 0
    assert caplog.text.count("cannot write") == 1
    assert "again after" in caplog.text


async def commit_new(consumer: FileConsumer, first: int, count: int) -> None:
    await consumer._commit(consumer.renderer.render_items(await read_new(consumer, first, count)))  # type: ignore[arg-type]


async def test_within_the_interval_batches_are_written_at_once_and_wait_for_one_sync(
    consumer_factory: ConsumerFactory,
) -> None:
    # No clock read here: a sync_interval far longer than the test, and the
    # syncer's own word that it holds a sync back for it.
    consumer = await consumer_factory(sync_interval_ms=600_000)
    await commit_new(consumer, 0, 5)  # the first sync starts at once
    await async_wait_until(lambda: consumer.stats.syncs == 1, timeout=10, what="the first sync")
    for first in range(5, 20, 5):
        await commit_new(consumer, first, 5)
        assert written(consumer)[-1] == first + 4  # the lines do not wait for the interval
    await async_wait_until(lambda: consumer.commits.waiting_for_interval, timeout=10, what="a sync held back")
    assert consumer.stats.syncs == 1
    assert await pending(consumer) == 15  # written, not yet synced: not acknowledged either
    await asyncio.wait_for(consumer.commits.drained(), 10)  # what a stop does: sync now
    assert consumer.stats.syncs == 2
    assert await pending(consumer) == 0
    assert written(consumer) == list(range(20))


async def test_drained_syncs_at_once_whatever_the_interval(consumer_factory: ConsumerFactory) -> None:
    consumer = await consumer_factory(sync_interval_ms=600_000)
    await commit_new(consumer, 0, 5)  # the first sync starts at once
    await commit_new(consumer, 5, 5)  # the next would wait ten minutes
    await asyncio.wait_for(consumer.commits.drained(), 10)
    assert await pending(consumer) == 0
    assert consumer.sink.checkpoint.offset == consumer.settings.output.stat().st_size


async def test_half_the_bound_waiting_syncs_at_once_whatever_the_interval(consumer_factory: ConsumerFactory) -> None:
    consumer = await consumer_factory(sync_interval_ms=600_000, batch_size=2)
    await commit_new(consumer, 0, 2)
    await async_wait_until(lambda: consumer.stats.syncs == 1, timeout=10, what="the first sync")
    half = UNSYNCED_BATCHES * 2 // 2
    for first in range(2, 2 + half, 2):
        await commit_new(consumer, first, 2)
    await async_wait_until(
        lambda: consumer.stats.entries_acked == 2 + half, timeout=10, what="a sync before the interval"
    )
    assert await pending(consumer) == 0


@pytest.mark.parametrize(
    ("overrides", "on_loop"),
    [({}, True), ({"fsync": FsyncPolicy.NEVER}, False), ({"shares_loop": True}, False)],
    ids=["fsync-batch", "fsync-never", "shares-the-loop"],
)
async def test_writes_run_on_the_loops_thread_only_where_syncs_bound_the_dirty_pages_and_the_loop_is_ours(
    consumer_factory: ConsumerFactory, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, object], on_loop: bool
) -> None:
    # A write the kernel holds (dirty-page throttling) holds the thread it runs
    # on: the loop's own only where syncs keep dirty pages few (--fsync batch)
    # and no catcher shares the loop (logrelay up).
    consumer = await consumer_factory(**overrides)
    threads: list[int] = []
    real_write = consumer.sink.write

    def write(data: bytes, last_id: bytes, producers: Mapping[str, int] | None = None) -> None:
        threads.append(threading.get_ident())
        real_write(data, last_id, producers)

    monkeypatch.setattr(consumer.sink, "write", write)
    await commit_new(consumer, 0, 3)
    await commit_new(consumer, 3, 3)
    await consumer.commits.drained()
    assert written(consumer) == list(range(6))
    assert len(threads) == 2
    assert all((thread == threading.get_ident()) is on_loop for thread in threads)


async def test_a_write_on_the_loop_that_fails_is_retried_and_lands_once(
    consumer: FileConsumer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert consumer.commits.write_on_loop
    caplog.set_level(logging.INFO, "logrelay.consumer")
    real_write = consumer.sink.write
    failures = iter([OSError(errno.ENOSPC, "No space left on device")])

    def write(data: bytes, last_id: bytes, producers: Mapping[str, int] | None = None) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        real_write(data, last_id, producers)

    monkeypatch.setattr(consumer.sink, "write", write)
    await asyncio.wait_for(commit_new(consumer, 0, 4), 30)
    await consumer.commits.drained()
    assert written(consumer) == [0, 1, 2, 3]
    assert await pending(consumer) == 0
    assert caplog.text.count("cannot write") == 1
    assert "again after" in caplog.text


async def test_a_rotation_due_happens_between_two_batches_and_what_it_synced_is_acknowledged(
    consumer: FileConsumer,
) -> None:
    now = [1_796_000_000.0]
    consumer.commits.clock = lambda: now[0]
    consumer.commits.rotation = RotationPolicy(RotationSettings(size=1), started=now[0])
    await consumer._commit(consumer.renderer.render_items(await read_new(consumer, 0, 5)))  # type: ignore[arg-type]
    assert list_segments(consumer.settings.output) == []  # an empty file is never rotated
    now[0] += 1
    await consumer._commit(consumer.renderer.render_items(await read_new(consumer, 5, 3)))  # type: ignore[arg-type]
    await consumer._commit(consumer.renderer.render_items(await read_new(consumer, 8, 2)))  # type: ignore[arg-type]
    await consumer.commits.drained()

    (segment,) = list_segments(consumer.settings.output)  # one rotation per second: the third batch waits
    segment_lines = (consumer.settings.output.parent / segment.name).read_bytes().splitlines()
    in_segment = [json.loads(line)["n"] for line in segment_lines]
    assert in_segment == [0, 1, 2, 3, 4]
    assert written(consumer) == [5, 6, 7, 8, 9]
    assert await pending(consumer) == 0
    assert consumer.stats.rotations == 1
    found = read_checkpoint(consumer.sink.checkpoint_path)
    assert found is not None
    assert found[1].inode == consumer.settings.output.stat().st_ino


async def test_an_interval_boundary_rotates_an_idle_file_without_a_new_batch(consumer: FileConsumer) -> None:
    hour = float(calendar.timegm((2026, 12, 6, 11, 0, 0, 0, 0, 0)))
    now = [hour - 30]
    consumer.commits.clock = lambda: now[0]
    consumer.commits.rotation = RotationPolicy(RotationSettings(interval=3600), started=now[0])
    await consumer._commit(consumer.renderer.render_items(await read_new(consumer, 0, 4)))  # type: ignore[arg-type]
    await consumer.commits.drained()
    await consumer.commits.maintain()
    assert list_segments(consumer.settings.output) == []
    now[0] = hour + 0.5
    await consumer.commits.maintain()  # what the consumer's loop does after an empty read
    (segment,) = list_segments(consumer.settings.output)
    assert segment.name == "central.log.20261206T110000Z"
    assert consumer.settings.output.read_bytes() == b""
    await consumer.commits.maintain()  # an empty file is not rotated again
    assert len(list_segments(consumer.settings.output)) == 1


async def test_an_fsync_failing_in_a_rotation_writes_the_lost_lines_again_before_the_rename(
    consumer: FileConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_796_000_000.0]
    consumer.commits.clock = lambda: now[0]
    consumer.commits.rotation = RotationPolicy(RotationSettings(size=1), started=now[0])
    consumer.commits.rotation.rotated(now[0])  # none before the clock's next second
    await consumer._commit(consumer.renderer.render_items(await read_new(consumer, 0, 3)))  # type: ignore[arg-type]
    await consumer.commits.drained()
    consumer.commits.sync_interval = 30.0  # the next batch waits for the rotation's sync
    await consumer._commit(consumer.renderer.render_items(await read_new(consumer, 3, 2)))  # type: ignore[arg-type]
    sink = consumer.sink
    real_fsync, failed = os.fsync, []

    def failing_once(fd: int) -> None:
        if fd == sink._fd and not failed:
            failed.append(fd)
            # The write-back failed: the kernel says so once and drops the pages (zeros on disk here).
            os.pwrite(fd, b"\0" * (sink.written.offset - sink.checkpoint.offset), sink.checkpoint.offset)
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_once)
    now[0] += 1
    await consumer._commit(consumer.renderer.render_items(await read_new(consumer, 5, 2)))  # type: ignore[arg-type]
    await consumer.commits.drained()

    assert failed
    (segment,) = list_segments(consumer.settings.output)
    in_segment = (consumer.settings.output.parent / segment.name).read_bytes().splitlines()
    assert [json.loads(line)["n"] for line in in_segment] == [0, 1, 2, 3, 4]  # written again, not zeros
    assert written(consumer) == [5, 6]
    assert await pending(consumer) == 0


async def test_a_file_renamed_without_a_sighup_is_reopened_at_the_next_check(
    consumer: FileConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "IDENTITY_CHECK_SECONDS", 0.0)
    await consumer._commit(consumer.renderer.render_items(await read_new(consumer, 0, 2)))  # type: ignore[arg-type]
    output = consumer.settings.output
    output.rename(output.with_name("central.log.1"))  # logrotate, whose postrotate never reached us
    await consumer.commits.maintain()
    await consumer._commit(consumer.renderer.render_items(await read_new(consumer, 2, 2)))  # type: ignore[arg-type]
    await consumer.commits.drained()
    assert written(consumer) == [2, 3]
    assert [json.loads(line)["n"] for line in output.with_name("central.log.1").read_bytes().splitlines()] == [0, 1]
    assert consumer.stats.reopens == 1
    assert await pending(consumer) == 0
