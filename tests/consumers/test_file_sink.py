"""FileSink: the append/checkpoint protocol and recovery, on a real file system."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.checkpoint import Checkpoint, read_checkpoint, read_checkpoint_slot, stream_id_key
from consumers.file_sink import FileSink, FsyncPolicy
from tests.support.file_consumers import HeldFsync
from tests.support.polling import wait_until


@pytest.fixture(params=list(FsyncPolicy), ids=lambda p: p.value)
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FileSink]:
    sink = FileSink(tmp_path / "central.log", request.param)
    assert sink.try_lock()
    sink.open()
    yield sink
    sink.close()


def append(sink: FileSink, data: bytes, last_id: bytes) -> None:
    """A batch made durable as the group commit makes it: written, then synced."""
    sink.write(data, last_id)
    sink.sync()


def test_append_writes_lines_then_the_checkpoint(sink: FileSink) -> None:
    append(sink, b"one\ntwo\n", b"1700000000000-1")
    append(sink, b"three\n", b"1700000000001-0")
    assert sink.path.read_bytes() == b"one\ntwo\nthree\n"
    found = read_checkpoint(sink.checkpoint_path)
    assert found is not None
    assert found[1] == Checkpoint(14, "1700000000001-0")
    assert sink.checkpoint.covers(b"1700000000000-5")
    assert not sink.checkpoint.covers(b"1700000000001-1")


def test_recovery_cuts_what_was_written_after_the_checkpoint(tmp_path: Path) -> None:
    first = FileSink(tmp_path / "central.log")
    assert first.try_lock()
    first.open()
    append(first, b"kept\n", b"5-0")
    # A crash between write and checkpoint: a whole line and a torn one.
    with first.path.open("ab") as raw:
        raw.write(b"not checkpointed\ntorn li")
    first.close()

    second = FileSink(tmp_path / "central.log")
    assert second.try_lock()
    checkpoint = second.open()
    assert checkpoint == Checkpoint(5, "5-0")
    assert second.path.read_bytes() == b"kept\n"
    append(second, b"next\n", b"6-0")
    assert second.path.read_bytes() == b"kept\nnext\n"
    second.close()


def test_a_failed_append_is_cut_before_the_retry(sink: FileSink) -> None:
    append(sink, b"a\n", b"1-0")
    with sink.path.open("ab") as raw:  # what a write interrupted by ENOSPC leaves
        raw.write(b"half a li")
    append(sink, b"b\n", b"2-0")
    assert sink.path.read_bytes() == b"a\nb\n"


def test_a_batch_without_lines_moves_the_checkpoint_without_writing(sink: FileSink) -> None:
    append(sink, b"a\n", b"1-0")
    append(sink, b"", b"3-0")
    append(sink, b"", b"2-0")  # never backwards
    assert sink.checkpoint == Checkpoint(2, "3-0")
    assert sink.path.read_bytes() == b"a\n"


def test_an_existing_file_without_checkpoint_is_kept_and_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    path.write_bytes(b"from before logrelay\n")
    sink = FileSink(path)
    assert sink.try_lock()
    assert sink.open() == Checkpoint(21, "0-0")
    append(sink, b"new\n", b"1-0")
    assert path.read_bytes() == b"from before logrelay\nnew\n"
    sink.close()


def test_a_file_shorter_than_its_checkpoint_is_appended_at_its_end(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    sink = FileSink(path)
    assert sink.try_lock()
    sink.open()
    append(sink, b"0123456789\n", b"1-0")
    sink.close()
    path.write_bytes(b"short\n")  # replaced behind our back
    sink = FileSink(path)
    assert sink.try_lock()
    assert sink.open() == Checkpoint(6, "1-0")
    append(sink, b"more\n", b"2-0")
    assert path.read_bytes() == b"short\nmore\n"
    sink.close()


def test_an_unreadable_checkpoint_is_an_error_not_a_guess(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "central.log")
    sink.checkpoint_path.write_text("{garbage")
    assert sink.try_lock()
    with pytest.raises(RuntimeError, match="unreadable checkpoint"):
        sink.open()
    sink.close()


def test_one_writer_at_a_time_and_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from consumers.file_sink import FileSink;"
            "s = FileSink(Path(sys.argv[1])); assert s.try_lock(); print('locked', flush=True); time.sleep(600)",
            str(path),
        ],
        stdout=subprocess.PIPE,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == b"locked\n"
            standby = FileSink(path)
            assert not standby.try_lock()
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            wait_until(standby.try_lock, timeout=5, what="the lock after kill -9 of its holder")
            standby.close()
        finally:
            holder.kill()


def test_stream_ids_order_numerically() -> None:
    assert stream_id_key(b"9-0") < stream_id_key(b"10-0")
    assert stream_id_key("10-2") < stream_id_key("10-10")
    assert stream_id_key(b"5") == (5, 0)


def reopened(path: Path) -> tuple[FileSink, Checkpoint]:
    sink = FileSink(path)
    assert sink.try_lock()
    return sink, sink.open()


def test_checkpoints_alternate_between_two_slots_and_the_newest_wins(sink: FileSink) -> None:
    for n in range(5):
        append(sink, b"line %d\n" % n, b"%d-0" % (n + 1))
        seq, checkpoint = read_checkpoint(sink.checkpoint_path) or (None, None)
        assert checkpoint == sink.checkpoint
        assert seq is not None
        assert seq >= n + 1
    data = sink.checkpoint_path.read_bytes()
    assert b'"last_id":"5-0"' in data
    assert b'"last_id":"4-0"' in data


@pytest.mark.parametrize("damage", [b"\0" * 64, b"{torn", b'{"seq":99,"offset":0,"last_id":"9-0","crc":1}'])
def test_a_torn_newest_slot_falls_back_to_the_one_before(tmp_path: Path, damage: bytes) -> None:
    path = tmp_path / "central.log"
    sink, _ = reopened(path)
    append(sink, b"first\n", b"1-0")
    append(sink, b"second\n", b"2-0")  # its slot is the newest
    sink.close()
    found = read_checkpoint_slot(sink.checkpoint_path)
    assert found is not None
    with sink.checkpoint_path.open("r+b") as raw:  # what a torn write or power loss may leave
        raw.seek(found[1])
        raw.write(damage)
    again, checkpoint = reopened(path)
    assert checkpoint == Checkpoint(6, "1-0")
    assert path.read_bytes() == b"first\n"  # "second" was not acknowledged: it is read and written again
    append(again, b"second\n", b"2-0")
    assert path.read_bytes() == b"first\nsecond\n"
    again.close()


def test_a_checkpoint_of_an_earlier_version_is_read_and_converted(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    path.write_bytes(b"old line\nnot checkpointed\n")
    path.with_name("central.log.checkpoint").write_text(json.dumps({"offset": 9, "last_id": "7-3"}))
    sink, checkpoint = reopened(path)
    assert checkpoint == Checkpoint(9, "7-3")
    assert path.read_bytes() == b"old line\n"
    append(sink, b"new\n", b"8-0")
    sink.close()
    assert read_checkpoint(sink.checkpoint_path) == (1, Checkpoint(13, "8-0"))
    _, checkpoint = reopened(path)
    assert checkpoint == Checkpoint(13, "8-0")


def test_written_lines_are_visible_at_once_and_checkpointed_by_the_next_sync(sink: FileSink) -> None:
    sink.write(b"one\n", b"1-0")
    sink.write(b"two\n", b"2-0")
    assert sink.path.read_bytes() == b"one\ntwo\n"
    assert sink.checkpoint == Checkpoint() == (read_checkpoint(sink.checkpoint_path) or (0, None))[1]
    assert sink.sync() == Checkpoint(8, "2-0")
    assert read_checkpoint(sink.checkpoint_path) == (1, Checkpoint(8, "2-0"))
    assert sink.sync() == Checkpoint(8, "2-0")  # nothing new: no checkpoint written
    assert read_checkpoint(sink.checkpoint_path) == (1, Checkpoint(8, "2-0"))
    sink.write(b"", b"3-0")  # dead letters only: the checkpoint moves, the file does not
    sink.write(b"", b"2-5")  # never backwards
    assert sink.sync() == Checkpoint(8, "3-0")


def test_lines_written_and_not_synced_are_cut_by_recovery(tmp_path: Path) -> None:
    sink, _ = reopened(tmp_path / "central.log")
    sink.write(b"synced\n", b"1-0")
    sink.sync()
    sink.write(b"not synced\n", b"2-0")
    sink.close()  # a crash before the sync: the entry is still pending in Redis
    again, checkpoint = reopened(tmp_path / "central.log")
    assert checkpoint == Checkpoint(7, "1-0")
    assert again.path.read_bytes() == b"synced\n"
    again.close()


def test_rewind_forgets_what_was_written_past_the_checkpoint(sink: FileSink) -> None:
    sink.write(b"a\n", b"1-0")
    sink.sync()
    sink.write(b"b\n", b"2-0")
    sink.rewind()
    assert sink.path.read_bytes() == b"a\n"
    assert sink.written == sink.checkpoint == Checkpoint(2, "1-0")
    sink.write(b"b again\n", b"2-0")
    sink.sync()
    assert sink.path.read_bytes() == b"a\nb again\n"


def test_a_sync_covers_the_writes_that_returned_before_it_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink, _ = reopened(tmp_path / "central.log")
    sink.write(b"before\n", b"1-0")
    fsync = HeldFsync()
    monkeypatch.setattr(os, "fsync", fsync)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        syncing = pool.submit(sink.sync)
        assert fsync.entered.wait(10)
        sink.write(b"during\n", b"2-0")  # does not wait for the fsync
        assert sink.path.read_bytes() == b"before\nduring\n"
        fsync.release.set()
        assert syncing.result(10) == Checkpoint(7, "1-0")  # not "during": it may not have reached the disk
    assert sink.sync() == Checkpoint(14, "2-0")
    sink.close()
