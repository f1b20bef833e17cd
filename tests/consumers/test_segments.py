"""SegmentKeeper: compression off the write path, retention, and what a crash in the middle leaves."""

from __future__ import annotations

import errno
import gzip
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from consumers.rotation import RotationSettings, segment_name
from consumers.segments import SegmentKeeper, list_segments
from relay.common.counters import ConsumerStats
from tests.support.polling import wait_until

T0 = 1_796_000_000  # a UTC second


class Crash(Exception):
    """Stands for kill -9 at a step of a compression."""


def make_segments(path: Path, count: int, *, lines: int = 100) -> list[Path]:
    """``count`` plain segments of ``path``, an hour apart, each with its own lines."""
    made = []
    for n in range(count):
        segment = path.with_name(segment_name(path.name, T0 + 3600 * n))
        segment.write_bytes(b"".join(b"segment %d line %d\n" % (n, i) for i in range(lines)))
        made.append(segment)
    return made


def companions(path: Path) -> None:
    """The file, its checkpoint and lock, and a file of the operator's, which nothing may touch."""
    for name in (path.name, path.name + ".checkpoint", path.name + ".lock", path.name + ".1", "notes.txt"):
        path.with_name(name).write_bytes(b"keep me\n")


def untouched(path: Path) -> bool:
    names = (path.name, path.name + ".checkpoint", path.name + ".lock", path.name + ".1", "notes.txt")
    return all(path.with_name(name).read_bytes() == b"keep me\n" for name in names)


def no_protection() -> tuple[int, int]:
    return (0, 0)


def contents(path: Path) -> list[bytes]:
    """Every segment's content, in write order, compressed or not."""
    found = []
    for segment in list_segments(path):
        data = path.with_name(segment.name).read_bytes()
        found.append(gzip.decompress(data) if segment.compressed else data)
    return found


def test_gzip_compresses_every_finished_segment_and_removes_the_plain_one(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    companions(path)
    originals = [segment.read_bytes() for segment in make_segments(path, 3)]
    stats = ConsumerStats()
    keeper = SegmentKeeper(path, RotationSettings(size=1, compress="gzip"), no_protection, stats=stats)
    keeper.pass_once()
    assert [segment.compressed for segment in list_segments(path)] == [True, True, True]
    assert contents(path) == originals
    assert stats.segments_compressed == 3
    assert untouched(path)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("step", ["compress", "rename", "remove"])
def test_a_crash_at_each_step_of_a_compression_leaves_each_line_once_after_the_next_start(
    tmp_path: Path, step: str
) -> None:
    path = tmp_path / "central.log"
    originals = [segment.read_bytes() for segment in make_segments(path, 2)]
    settings = RotationSettings(size=1, compress="gzip")

    def crash(name: str) -> None:
        if name == step:
            raise Crash(name)

    with pytest.raises(Crash):
        SegmentKeeper(path, settings, no_protection, step=crash).pass_once()
    # What the crash left: a temporary file, or a plain segment beside its complete .gz.
    SegmentKeeper(path, settings, no_protection).resolve_leftovers()
    assert not list(tmp_path.glob("*.tmp"))
    assert contents(path) == originals  # no segment twice, none lost
    SegmentKeeper(path, settings, no_protection).pass_once()
    assert contents(path) == originals
    assert all(segment.compressed for segment in list_segments(path))


def test_a_torn_temporary_file_is_removed_and_its_segment_compressed_again(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    (segment,) = make_segments(path, 1)
    original = segment.read_bytes()
    segment.with_name(segment.name + ".gz.tmp").write_bytes(gzip.compress(original)[:20])
    keeper = SegmentKeeper(path, RotationSettings(size=1, compress="gzip"), no_protection)
    keeper.resolve_leftovers()
    keeper.pass_once()
    assert contents(path) == [original]


def test_the_file_the_checkpoint_covers_is_never_compressed_or_removed(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    segments = make_segments(path, 3)
    status = segments[0].stat()  # a crash in the middle of a rotation: the checkpoint's file has a segment name
    protected: Callable[[], tuple[int, int]] = lambda: (status.st_dev, status.st_ino)  # noqa: E731
    SegmentKeeper(path, RotationSettings(size=1, compress="gzip", keep=0), protected).pass_once()
    assert [segment.name for segment in list_segments(path)] == [segments[0].name]


def test_retention_removes_the_oldest_segments_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    companions(path)
    segments = make_segments(path, 5)
    stats = ConsumerStats()
    SegmentKeeper(path, RotationSettings(size=1, keep=2), no_protection, stats=stats).pass_once()
    assert [segment.name for segment in list_segments(path)] == [s.name for s in segments[3:]]
    assert stats.segments_removed == 3
    assert untouched(path)
    size = segments[4].stat().st_size
    SegmentKeeper(path, RotationSettings(size=1, keep_bytes=size), no_protection).pass_once()
    assert [segment.name for segment in list_segments(path)] == [segments[4].name]


def test_retention_by_age_uses_the_rotation_time_in_the_name(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    old = path.with_name(segment_name(path.name, T0))
    new = path.with_name(segment_name(path.name, 4_000_000_000))  # 2096
    old.write_bytes(b"old\n")
    new.write_bytes(b"new\n")
    SegmentKeeper(path, RotationSettings(size=1, keep_age=86400), no_protection).pass_once()
    assert not old.exists()
    assert new.exists()


def test_the_thread_compresses_after_a_wake_and_stops_in_the_middle_of_a_segment(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    stats = ConsumerStats()
    keeper = SegmentKeeper(path, RotationSettings(size=1, compress="gzip"), no_protection, stats=stats)
    keeper.start()
    try:
        make_segments(path, 2)
        keeper.wake()
        wait_until(lambda: stats.segments_compressed == 2, timeout=20, what="both segments compressed")
    finally:
        keeper.stop()
    assert all(segment.compressed for segment in list_segments(path))

    big = path.with_name(segment_name(path.name, T0 + 10**6))
    big.write_bytes(os.urandom(1 << 20) * 64)  # 64 MiB of incompressible bytes: takes a while
    steps: list[str] = []
    slow = SegmentKeeper(path, RotationSettings(size=1, compress="gzip"), no_protection, step=steps.append)
    slow.start()
    slow.wake()
    wait_until(lambda: "compress" in steps, timeout=20, what="a compression under way")
    slow.stop()
    assert big.exists()  # abandoned: the plain segment stays, no temporary file
    assert not list(tmp_path.glob("*.tmp"))


def test_a_rotation_during_a_compression_is_compressed_without_waiting_for_the_next_pass(tmp_path: Path) -> None:
    # The compressor lists the segments once per pass: a segment rotated while it works on
    # another is not in that list, and the wake that announced it came while it was at work.
    # Here the pass it was in compresses nothing (the disk is full for a moment).
    path = tmp_path / "central.log"
    first = make_segments(path, 1)[0]
    stats = ConsumerStats()
    in_compression = threading.Event()
    release = threading.Event()

    def hold_the_first(step: str) -> None:
        if step == "compress" and not in_compression.is_set():
            in_compression.set()
            release.wait(20)
            raise OSError(errno.ENOSPC, "No space left on device")

    keeper = SegmentKeeper(
        path, RotationSettings(size=1, compress="gzip"), no_protection, stats=stats, step=hold_the_first
    )
    keeper.start()
    try:
        wait_until(in_compression.is_set, timeout=20, what="the first segment's compression under way")
        second = path.with_name(segment_name(path.name, T0 + 7200))
        second.write_bytes(b"rotated meanwhile\n")
        keeper.wake()
        # The keeper's loop has taken the wake (and asked for a compression) before the first is done.
        wait_until(lambda: not keeper._wake.is_set(), timeout=20, what="the wake taken")
        release.set()
        wait_until(lambda: stats.segments_compressed == 2, timeout=20, what="both segments compressed")
    finally:
        release.set()
        keeper.stop()
    assert not first.exists()
    assert not second.exists()
    assert gzip.decompress(second.with_name(second.name + ".gz").read_bytes()) == b"rotated meanwhile\n"


def test_a_segment_that_cannot_be_compressed_holds_up_neither_the_others_nor_retention(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    segments = make_segments(path, 4)
    calls: list[str] = []

    def disk_full_once(step: str) -> None:
        calls.append(step)
        if calls == ["compress"]:  # the oldest segment's compression: no space left
            raise OSError(errno.ENOSPC, "No space left on device")

    stats = ConsumerStats()
    settings = RotationSettings(size=1, compress="gzip", keep=2)
    SegmentKeeper(path, settings, no_protection, stats=stats, step=disk_full_once).pass_once()
    # Retention went first; the first compression failed, the next one went on.
    assert [segment.name for segment in list_segments(path)] == [segments[2].name, segments[3].name + ".gz"]
    assert (stats.segments_removed, stats.segments_compressed) == (2, 1)
    assert not list(tmp_path.glob("*.tmp"))
    SegmentKeeper(path, settings, no_protection, stats=stats).pass_once()  # space again
    assert [segment.name for segment in list_segments(path)] == [s.name + ".gz" for s in segments[2:]]


def test_a_compressed_segment_keeps_the_segments_mode(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    (segment,) = make_segments(path, 1)
    segment.chmod(0o640)
    SegmentKeeper(path, RotationSettings(size=1, compress="gzip"), no_protection).pass_once()
    assert stat.S_IMODE(segment.with_name(segment.name + ".gz").stat().st_mode) == 0o640
