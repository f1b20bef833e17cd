"""The checkpoint remembers each producer's last record number, and reads the slots of earlier versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumers.checkpoint import (
    MAX_PRODUCERS,
    OLD_SLOT,
    SLOT_BLOCK,
    Checkpoint,
    encode_slot,
    merge_producers,
    read_checkpoint_slot,
)
from consumers.file_sink import FileSink
from consumers.format_check import MAX_FORMAT_LENGTH, check_format

A, B = "0123456789abcdef", "fedcba9876543210"


def opened(path: Path) -> FileSink:
    sink = FileSink(path)
    assert sink.try_lock()
    sink.open()
    return sink


def test_merging_keeps_the_higher_number_and_the_producers_that_wrote_last() -> None:
    producers, _ = merge_producers({}, {A: 7, B: 3})
    assert merge_producers(producers, {A: 5}) == ({A: 7, B: 3}, False)
    many, forgotten = merge_producers({}, {f"{n:016x}": 1 for n in range(MAX_PRODUCERS)})
    assert len(many) == MAX_PRODUCERS
    assert not forgotten
    # The least recently updated is forgotten first; one just updated stays.
    refreshed, _ = merge_producers(many, {f"{0:016x}": 2})
    grown, forgotten = merge_producers(refreshed, {A: 1})
    assert forgotten
    assert len(grown) == MAX_PRODUCERS
    assert f"{0:016x}" in grown
    assert A in grown
    assert f"{1:016x}" not in grown


def test_the_producers_survive_a_restart_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    sink = opened(path)
    sink.write(b"a\nb\n", b"2-0", {A: 2})
    sink.write(b"c\n", b"3-0", {B: 9, A: 3})
    sink.sync()
    sink.write(b"not synced\n", b"4-0", {A: 4})  # cut back on restart: not held
    sink.close()
    again = opened(path)
    assert again.checkpoint.producers == {A: 3, B: 9}
    assert path.read_bytes() == b"a\nb\nc\n"
    again.close()


def test_a_line_of_dead_letters_only_still_carries_the_producers(tmp_path: Path) -> None:
    sink = opened(tmp_path / "central.log")
    sink.write(b"", b"1-0", {A: 5})
    assert sink.sync().producers == {A: 5}
    sink.close()


def test_an_earlier_versions_slots_are_read_and_the_newer_one_kept_until_a_new_slot_is_down(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    path.write_bytes(b"one\ntwo\n")
    old = bytearray(b" " * (OLD_SLOT + 256))
    old[0:256] = encode_slot(3, Checkpoint(4, "1-0")).ljust(256)
    old[OLD_SLOT : OLD_SLOT + 256] = encode_slot(4, Checkpoint(8, "2-0")).ljust(256)
    path.with_name("central.log.checkpoint").write_bytes(bytes(old))
    sink = opened(path)  # checkpoints the file's device and inode: the first new slot
    assert sink.checkpoint.offset == 8
    assert sink.checkpoint.last_id == "2-0"
    data = path.with_name("central.log.checkpoint").read_bytes()
    # It went past both old ones: a write torn there leaves them whole.
    assert data[: OLD_SLOT + 256] == bytes(old)
    found = read_checkpoint_slot(path.with_name("central.log.checkpoint"))
    assert found is not None
    assert (found[0], found[1]) == (5, SLOT_BLOCK)
    sink.write(b"three\n", b"3-0", {A: 1})
    sink.sync()
    sink.close()
    found = read_checkpoint_slot(path.with_name("central.log.checkpoint"))
    assert found is not None
    assert (found[0], found[1]) == (6, 0)
    assert found[2].producers == {A: 1}
    reopened = opened(path)
    assert reopened.checkpoint == Checkpoint(14, "3-0")
    reopened.close()


@pytest.mark.parametrize("producers", ['{"ABCDEF0123456789":1}', '{"0123456789abcdef":0}', '{"0123":1}', "[]"])
def test_a_slot_with_malformed_producers_is_not_a_checkpoint(tmp_path: Path, producers: str) -> None:
    good = encode_slot(1, Checkpoint(0, "1-0"))
    path = tmp_path / "c.checkpoint"
    body = good.decode().replace(',"crc"', f',"producers":{producers},"crc"')
    path.write_bytes(good + b" " * (SLOT_BLOCK - len(good)) + body.encode())
    found = read_checkpoint_slot(path)
    assert found is not None
    assert found[1] == 0


def test_a_checkpoint_without_producers_holds_what_it_covers_by_id(tmp_path: Path) -> None:
    # Written by a version before identities: its records are known by id, up to its last_id.
    path = tmp_path / "central.log"
    path.write_bytes(b"one\ntwo\n")
    path.with_name("central.log.checkpoint").write_bytes(encode_slot(3, Checkpoint(8, "2-0")))
    sink = opened(path)
    assert sink.checkpoint.floor == "2-0"
    sink.write(b"three\n", b"3-0", {A: 1})
    assert sink.sync().floor == "2-0"
    sink.close()
    again = opened(path)
    assert again.checkpoint.floor == "2-0"
    again.close()


def test_forgetting_a_producer_raises_the_floor_to_the_end_of_the_batch(tmp_path: Path) -> None:
    sink = opened(tmp_path / "central.log")
    sink.write(b"a\n", b"5-0", {f"{n:016x}": 1 for n in range(MAX_PRODUCERS)})
    assert sink.written.floor == "0-0"
    sink.write(b"b\n", b"7-0", {A: 1})
    assert sink.written.floor == "7-0"
    assert f"{0:016x}" not in sink.written.producers
    sink.close()


TEXT = "%(levelname)s %(message)s"


def opened_with(path: Path, line_format: str, **kwargs: object) -> FileSink:
    sink = FileSink(path, line_format=line_format, **kwargs)  # type: ignore[arg-type]
    assert sink.try_lock()
    sink.open()
    return sink


def test_the_format_is_remembered_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    sink = opened_with(path, TEXT)
    sink.write(b"INFO a\n", b"1-0", {A: 1})
    sink.sync()
    sink.close()
    found = read_checkpoint_slot(path.with_name("central.log.checkpoint"))
    assert found is not None
    assert found[2].line_format == TEXT
    again = opened_with(path, TEXT)
    assert again.checkpoint.line_format == TEXT
    assert not again.holds_another_format
    again.close()


@pytest.mark.parametrize("layout", ["slots", "one object"])
def test_a_checkpoint_of_an_earlier_version_without_a_format_is_read_and_adopts_the_current_one(
    tmp_path: Path, layout: str
) -> None:
    path = tmp_path / "central.log"
    path.write_bytes(b"one\ntwo\n")
    checkpoint_path = path.with_name("central.log.checkpoint")
    if layout == "slots":
        # What the previous version wrote: no "format" key.
        slot = encode_slot(3, Checkpoint(8, "2-0", producers={A: 2}))
        assert b'"format"' not in slot
        checkpoint_path.write_bytes(slot)
    else:
        checkpoint_path.write_text('{"offset": 8, "last_id": "2-0"}')
    sink = opened_with(path, "json")
    assert (sink.checkpoint.offset, sink.checkpoint.last_id, sink.checkpoint.line_format) == (8, "2-0", "json")
    assert not sink.holds_another_format
    sink.close()
    assert path.read_bytes() == b"one\ntwo\n"
    found = read_checkpoint_slot(checkpoint_path)
    assert found is not None
    assert found[2].line_format == "json"  # written at once: the next start compares with it


def test_a_file_of_another_format_is_told_and_rotated_to_a_segment_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    sink = opened_with(path, TEXT)
    sink.write(b"INFO a\nINFO b\n", b"2-0", {A: 2})
    sink.sync()
    sink.close()
    again = opened_with(path, "json")
    assert again.holds_another_format
    assert again.checkpoint.line_format == TEXT  # nothing overwritten before the rotation
    segment = tmp_path / "central.log.20261207T050000Z"
    rotated = again.rotate(segment)
    assert (rotated.offset, rotated.last_id, rotated.line_format) == (0, "2-0", "json")
    assert rotated.producers == {A: 2}
    assert not again.holds_another_format
    again.write(b'{"msg":"c"}\n', b"3-0", {A: 3})
    again.sync()
    again.close()
    assert segment.read_bytes() == b"INFO a\nINFO b\n"
    assert path.read_bytes() == b'{"msg":"c"}\n'
    last = opened_with(path, "json")
    assert (last.checkpoint.line_format, last.checkpoint.offset) == ("json", path.stat().st_size)
    last.close()


def test_an_empty_file_takes_the_new_format_without_a_segment(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    opened_with(path, TEXT).close()
    sink = opened_with(path, "json")
    assert not sink.holds_another_format
    assert sink.checkpoint.line_format == "json"
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["central.log", "central.log.checkpoint", "central.log.lock"]


def test_a_sink_that_records_no_format_keeps_the_one_recorded(tmp_path: Path) -> None:
    path = tmp_path / "central.log"
    sink = opened_with(path, TEXT)
    sink.write(b"INFO a\n", b"1-0")
    sink.sync()
    sink.close()
    plain = opened(path)
    assert not plain.holds_another_format
    plain.write(b"INFO b\n", b"2-0")
    assert plain.sync().line_format == TEXT
    plain.close()


def test_a_slot_whose_format_is_not_text_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "central.log.checkpoint"
    good = encode_slot(1, Checkpoint(0, "1-0", line_format=TEXT))
    body = '{"seq":2,"offset":0,"last_id":"2-0","format":7}'
    path.write_bytes(good + b" " * (SLOT_BLOCK - len(good)) + body.encode())
    found = read_checkpoint_slot(path)
    assert found is not None
    assert (found[0], found[2].line_format) == (1, TEXT)


def test_the_longest_format_with_the_most_producers_fits_its_slot() -> None:
    # Characters JSON escapes longest (a surrogate pair each), as many as a format may hold.
    longest = "%(message)s" + "\U0001f600" * (MAX_FORMAT_LENGTH - len("%(message)s"))
    assert check_format(longest) == []
    producers = {f"{n:016x}": 2**63 - 1 for n in range(MAX_PRODUCERS)}
    slot = encode_slot(
        2**63 - 1,
        Checkpoint(
            2**63 - 1, "18446744073709551615-18446744073709551615", 1, 1, producers, "18446744073709551615-0", longest
        ),
    )
    assert len(slot) <= SLOT_BLOCK
