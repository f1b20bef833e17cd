"""Dead letters copied into their JSON-lines file: every letter once, in order, whole lines, bytes kept."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import fakeredis
import pytest

from relay.common.stream import StreamKeys
from relay.dead_letter_file import DeadLetterFile, dead_letter_path, letter_line, read_letters
from relay.dead_letters import DeadLetter
from relay.publish.script import PUBLISH_SCRIPT, DeadLetterEntry, script_args
from tests.support.dead_letters import big_frame, refused
from tests.support.polling import async_wait_until

KEYS = StreamKeys("logs")


@pytest.fixture
async def broker() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    """An embedded broker as ``logrelay up`` makes it (fakeredis with Lua)."""
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    yield client
    await client.aclose()


async def add_letters(broker: fakeredis.FakeAsyncRedis, seq: int, count: int) -> None:
    """``count`` refused frames, written as the catcher writes them (one publish script call)."""
    bad = refused(big_frame(100_000))
    batch = [DeadLetterEntry(bad.raw, bad.reason, f"10.0.0.{n}:5000", "1700000000.25") for n in range(count)]
    args = script_args(batch, seq, "catcher-1", 0, "block")  # type: ignore[arg-type]
    await broker.eval(PUBLISH_SCRIPT, 3, KEYS.records, KEYS.dead_letters, KEYS.producer("p"), *args)  # type: ignore[misc]


def test_the_file_sits_beside_the_output_under_a_name_rotation_leaves_alone() -> None:
    assert dead_letter_path(Path("/var/log/logrelay/central.log")) == Path(
        "/var/log/logrelay/central.log.dead-letters.jsonl"
    )


def test_a_line_holds_the_entrys_fields_and_gives_back_the_same_bytes(tmp_path: Path) -> None:
    fields = {b"v": b"1", b"reason": b"caf\xc3\xa9 refused", b"raw": b"\x80\x04\xff\x00pickle", b"client": b"c:1"}
    line = letter_line(DeadLetter("1700000000000-3", fields))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert json.loads(line) == {
        "id": "1700000000000-3",
        "v": "1",
        "reason": "café refused",
        "raw": {"base64": "gAT/AHBpY2tsZQ=="},
        "client": "c:1",
    }
    path = tmp_path / "letters.jsonl"
    path.write_bytes(line * 2)
    assert [(letter.id, letter.fields) for letter in read_letters(path)] == [("1700000000000-3", fields)] * 2


def test_reading_skips_and_names_a_line_that_is_not_a_letter(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = letter_line(DeadLetter("1-0", {b"reason": b"r"}))
    path = tmp_path / "letters.jsonl"
    path.write_bytes(good + b'{"id": "2-0", "raw": {"base64": "%%%"}}\n' + b'{"reason": "no id"}\n' + b"[1]\n" + good)
    with caplog.at_level(logging.WARNING, "logrelay.dead_letter_file"):
        assert [letter.id for letter in read_letters(path)] == ["1-0", "1-0"]
    assert [record.getMessage().split(" (")[0] for record in caplog.records] == [
        f"{path} line {n} is not a dead letter" for n in (2, 3, 4)
    ]


async def test_every_letter_is_copied_once_in_order_and_the_last_ones_at_stop(
    broker: fakeredis.FakeAsyncRedis, tmp_path: Path
) -> None:
    path = tmp_path / "central.log.dead-letters.jsonl"
    copier = DeadLetterFile(broker, KEYS.dead_letters, path)
    task = asyncio.create_task(copier.run())
    try:
        await add_letters(broker, 1, 45)  # more than a page
        await async_wait_until(lambda: copier.written == 45, timeout=20, what="the first letters copied")
        await add_letters(broker, 2, 3)
        copier.stop()  # at once: the letters added just before are copied on the way out
        await asyncio.wait_for(task, 20)
    finally:
        task.cancel()
    stream = await broker.xrange(KEYS.dead_letters)
    letters = list(read_letters(path))
    assert [(letter.id, letter.fields) for letter in letters] == [(i.decode(), f) for i, f in stream]
    assert len(letters) == 48
    assert path.read_bytes().count(b"\n") == 48


async def test_a_line_cut_short_before_is_ended_so_the_next_starts_whole(
    broker: fakeredis.FakeAsyncRedis, tmp_path: Path
) -> None:
    path = tmp_path / "letters.jsonl"
    path.write_bytes(letter_line(DeadLetter("1-0", {b"reason": b"kept"})) + b'{"id": "2-0", "rea')
    await add_letters(broker, 1, 2)
    copier = DeadLetterFile(broker, KEYS.dead_letters, path)
    copier.stop()
    await asyncio.wait_for(copier.run(), 20)
    ids = [letter.id for letter in read_letters(path)]
    assert ids[0] == "1-0"
    assert len(ids) == 3
    assert path.read_bytes().endswith(b"\n")
