"""FileSink across rotations, reopens and crashes in the middle of them: each line in exactly one file."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from consumers.checkpoint import SLOT_BLOCK, Checkpoint, encode_slot, read_checkpoint
from consumers.file_sink import FileSink, FsyncPolicy
from consumers.segments import list_segments


class Crash(Exception):
    """Stands for kill -9 at a step: the sink is abandoned there, its descriptors closed by the 'kernel'."""


def crash_at(step: str) -> Callable[[str], None]:
    def maybe_crash(name: str) -> None:
        if name == step:
            raise Crash(step)

    return maybe_crash


def opened(path: Path, **kwargs: object) -> FileSink:
    sink = FileSink(path, FsyncPolicy.NEVER, **kwargs)  # type: ignore[arg-type]
    assert sink.try_lock()
    try:
        sink.open()
    except Crash:
        sink.close()  # the lock goes with the descriptors, as with kill -9
        raise
    return sink


def write_lines(sink: FileSink, first: int, last: int) -> None:
    """Lines first..last, one batch; entry n's id is n-0."""
    sink.write(b"".join(b"line %d\n" % n for n in range(first, last + 1)), b"%d-0" % last)


def redeliver(sink: FileSink, last: int) -> None:
    """What the consumer does after a restart: write again every entry the checkpoint does not cover."""
    covered = int(sink.checkpoint.last_id.split("-")[0])
    if covered < last:
        write_lines(sink, covered + 1, last)
    sink.sync()


def every_line(path: Path, *others: Path) -> list[int]:
    """The line numbers in the segments (in name order), the given other files, then PATH."""
    files = [path.with_name(segment.name) for segment in list_segments(path)] + list(others) + [path]
    numbers: list[int] = []
    for file in files:
        data = file.read_bytes() if file.exists() else b""
        assert not data or data.endswith(b"\n"), f"{file.name} ends inside a line"
        numbers += [int(line.split()[1]) for line in data.splitlines()]
    return numbers


def test_rotate_moves_what_was_written_to_the_segment_and_goes_on_in_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    sink = opened(path)
    os.chmod(path, 0o640)
    write_lines(sink, 1, 10)
    segment = tmp_path / "central.log.20261206T120000Z"
    checkpoint = sink.rotate(segment)
    write_lines(sink, 11, 12)
    sink.sync()
    assert segment.read_bytes().count(b"\n") == 10
    assert path.read_bytes() == b"line 11\nline 12\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    status = path.stat()
    assert (checkpoint.offset, checkpoint.last_id) == (0, "10-0")
    found = read_checkpoint(sink.checkpoint_path)
    assert found is not None
    assert (found[1].device, found[1].inode) == (status.st_dev, status.st_ino)
    sink.close()


@pytest.mark.parametrize("step", ["sync", "rename", "create", "checkpoint"])
def test_kill_at_each_step_of_a_rotation_leaves_each_line_in_exactly_one_file(tmp_path: Path, step: str) -> None:
    path = tmp_path / "central.log"
    sink = opened(path, step=crash_at(step))
    write_lines(sink, 1, 5)
    sink.sync()
    write_lines(sink, 6, 9)  # written, not yet synced
    with pytest.raises(Crash):
        sink.rotate(tmp_path / "central.log.20261206T120000Z")
    sink.close()

    recovered = opened(path)
    redeliver(recovered, 9)
    write_lines(recovered, 10, 12)
    recovered.sync()
    recovered.close()
    assert every_line(path) == list(range(1, 13))


@pytest.mark.parametrize("step", ["complete", "checkpoint"])
def test_kill_during_the_recovery_of_a_rotation_recovers_all_the_same(tmp_path: Path, step: str) -> None:
    path = tmp_path / "central.log"
    sink = opened(path, step=crash_at("create"))
    write_lines(sink, 1, 5)
    with pytest.raises(Crash):
        sink.rotate(tmp_path / "central.log.20261206T120000Z")
    sink.close()
    with pytest.raises(Crash):
        opened(path, step=crash_at(step))
    recovered = opened(path)
    redeliver(recovered, 7)
    recovered.close()
    assert every_line(path) == list(range(1, 8))


def test_reopen_after_an_outside_rename_goes_on_in_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    sink = opened(path)
    write_lines(sink, 1, 3)
    sink.sync()
    assert sink.reopen() is None  # not renamed: nothing to do
    rotated = tmp_path / "central.log.1"
    os.rename(path, rotated)  # logrotate's rename
    write_lines(sink, 4, 5)  # before the SIGHUP: into the renamed file, as nginx does
    checkpoint = sink.reopen()
    assert checkpoint is not None
    assert checkpoint.offset == 0
    write_lines(sink, 6, 6)
    sink.sync()
    sink.close()
    assert rotated.read_bytes().count(b"\n") == 5
    assert every_line(path, rotated) == list(range(1, 7))


def test_reopen_keeps_what_a_file_created_by_someone_else_holds(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    sink = opened(path)
    write_lines(sink, 1, 2)
    os.rename(path, tmp_path / "central.log.1")
    path.write_bytes(b"line 0 from the operator\n")  # logrotate's create, then someone's line
    path.chmod(0o600)
    checkpoint = sink.reopen()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # create's mode stays
    assert checkpoint is not None
    assert checkpoint.offset == len(b"line 0 from the operator\n")
    write_lines(sink, 3, 3)
    sink.sync()
    sink.close()
    assert path.read_bytes() == b"line 0 from the operator\nline 3\n"


@pytest.mark.parametrize("created", [True, False], ids=["logrotate-create", "no-new-file"])
def test_a_crash_between_an_outside_rename_and_the_reopen_completes_the_renamed_file(
    tmp_path: Path, created: bool, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "central.log"
    sink = opened(path)
    os.chmod(path, 0o600)
    write_lines(sink, 1, 4)
    sink.sync()
    rotated = tmp_path / "central.log-20261206"
    os.rename(path, rotated)
    if created:
        path.touch()
    write_lines(sink, 5, 7)  # into the renamed file, never synced: a crash now
    sink.close()

    with caplog.at_level(logging.INFO, logger="logrelay.filesink"):
        recovered = opened(path)
    assert "was renamed to central.log-20261206 before the consumer reopened it" in caplog.text
    assert rotated.read_bytes().count(b"\n") == 4  # cut back to its checkpoint: 5-7 are written again, in PATH
    assert stat.S_IMODE(path.stat().st_mode) == (0o666 & ~_umask() if created else 0o600)
    redeliver(recovered, 8)
    recovered.close()
    assert every_line(path, rotated) == list(range(1, 9))


def test_the_checkpoints_file_gone_entirely_is_a_warning_and_writing_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "central.log"
    sink = opened(path)
    write_lines(sink, 1, 2)
    sink.sync()
    sink.close()
    os.unlink(path)  # compressed or removed by someone before we could complete it
    recovered = opened(path)
    assert "is no longer in" in caplog.text
    redeliver(recovered, 3)
    recovered.close()
    assert path.read_bytes() == b"line 3\n"


def test_copytruncate_is_an_error_naming_the_safe_recipe_and_writing_goes_on_at_the_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "central.log"
    sink = opened(path)
    write_lines(sink, 1, 3)
    sink.sync()
    os.truncate(path, 0)  # logrotate's copytruncate, after its copy
    write_lines(sink, 4, 4)
    sink.sync()
    assert path.read_bytes() == b"line 4\n"  # no hole of zeros where lines 1-3 were
    assert "copytruncate" in caplog.text
    assert "postrotate kill -HUP" in caplog.text
    sink.close()
    caplog.clear()
    os.truncate(path, 0)
    recovered = opened(path)
    assert "copytruncate" in caplog.text
    assert recovered.checkpoint.offset == 0
    recovered.close()


def test_a_checkpoint_of_an_earlier_version_without_the_files_identity_still_recovers(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    path.write_bytes(b"line 1\nline 2\nline 3 torn")
    old = b'{"seq":4,"offset":14,"last_id":"2-0","crc":%d}\n' % _crc(b'{"seq":4,"offset":14,"last_id":"2-0"}')
    (tmp_path / "central.log.checkpoint").write_bytes(old.ljust(256, b" ") + b"\0" * (4096 - 256))
    sink = opened(path)
    assert (sink.checkpoint.offset, sink.checkpoint.last_id) == (14, "2-0")
    assert sink.checkpoint.inode == path.stat().st_ino  # named from now on
    redeliver(sink, 3)
    sink.close()
    assert every_line(path) == [1, 2, 3]


def _crc(body: bytes) -> int:
    import zlib

    return zlib.crc32(body)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("reused_by", ["notes.txt", "central.log.1.gz"])
def test_a_file_that_reused_the_checkpoints_inode_is_left_alone(tmp_path: Path, reused_by: str) -> None:
    path = tmp_path / "central.log"
    sink = opened(path)
    write_lines(sink, 1, 5)
    sink.sync()
    sink.close()
    os.rename(path, tmp_path / "central.log.1")
    other = tmp_path / reused_by
    other.write_bytes(b"not ours\n" * 20)  # longer than the checkpoint's offset
    # As if the renamed file were gone and its inode reused: the checkpoint names this one.
    status = other.stat()
    found = read_checkpoint(sink.checkpoint_path)
    assert found is not None
    forged = Checkpoint(found[1].offset, found[1].last_id, status.st_dev, status.st_ino)
    sink.checkpoint_path.write_bytes(encode_slot(found[0] + 2, forged).ljust(2 * SLOT_BLOCK, b"\0"))
    (tmp_path / "central.log.1").unlink()
    recovered = opened(path)
    assert other.read_bytes() == b"not ours\n" * 20  # not cut back: not the checkpoint's file
    recovered.close()


def test_the_same_file_under_another_device_number_is_cut_back_to_its_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    sink = opened(path)
    write_lines(sink, 1, 3)
    sink.sync()
    sink.write(b"line 4\nline 5 to", b"5-0")  # a torn tail past the checkpoint, then kill -9
    sink.close()
    found = read_checkpoint(sink.checkpoint_path)
    assert found is not None
    # A remount gave the file system another device number: the checkpoint's identity no longer matches.
    renumbered = Checkpoint(found[1].offset, found[1].last_id, found[1].device + 1, found[1].inode)
    sink.checkpoint_path.write_bytes(encode_slot(found[0] + 2, renumbered).ljust(2 * SLOT_BLOCK, b"\0"))
    recovered = opened(path)
    redeliver(recovered, 5)
    recovered.close()
    assert path.read_bytes() == b"".join(b"line %d\n" % n for n in range(1, 6))  # no torn line, none twice


@pytest.mark.parametrize("step", ["sync", "rename", "create", "checkpoint"])
def test_kill_in_a_rotation_for_another_format_leaves_each_line_once_and_one_format_per_file(
    tmp_path: Path, step: str
) -> None:
    path = tmp_path / "central.log"
    first = opened(path, line_format="%(message)s")
    write_lines(first, 1, 5)
    first.sync()
    first.close()
    sink = opened(path, line_format="json", step=crash_at(step))
    assert sink.holds_another_format
    with pytest.raises(Crash):
        sink.rotate(path.with_name("central.log.20261207T050000Z"))
    sink.close()
    again = opened(path, line_format="json")
    if again.holds_another_format:  # killed before the rename: the old file is still PATH
        again.rotate(path.with_name("central.log.20261207T050001Z"))
    assert again.checkpoint.line_format == "json"
    assert path.read_bytes() == b""
    write_lines(again, 6, 7)
    again.sync()
    again.close()
    assert every_line(path) == list(range(1, 8))
    (segment,) = list_segments(path)
    assert path.with_name(segment.name).read_bytes().count(b"\n") == 5
