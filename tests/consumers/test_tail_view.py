"""TailView, NewestCollector and previous_id: what logrelay tail makes of entries; no Redis."""

from __future__ import annotations

import json
import logging

import pytest

from consumers.formatting import DEFAULT_FORMAT, JsonLineFormatter, LineFormatter
from consumers.record_filter import RecordFilter
from consumers.tail_view import Entry, NewestCollector, TailLine, TailView, Unrenderable, previous_id
from tests.support.entries import entry_for


def entry(seq: int, *, name: str = "app.web", level: int = logging.INFO) -> dict[bytes, bytes]:
    record = logging.LogRecord(name, level, "/srv/app.py", 7, "record %d of %s", (seq, name), None)
    return entry_for(record)


def view(record_filter: RecordFilter | None = None, fmt: str = DEFAULT_FORMAT) -> TailView:
    return TailView(LineFormatter(fmt), record_filter or RecordFilter())


def test_a_matching_entry_renders_as_the_file_consumer_writes_it() -> None:
    fields = entry(3, level=logging.ERROR)
    line = view().render(b"1700000000000-0", fields)
    assert isinstance(line, TailLine)
    assert line.text == LineFormatter().format(b"1700000000000-0", fields)
    assert line.text.endswith(b" ERROR app.web [10.1.2.3:4000] record 3 of app.web\n")
    assert line.level == logging.ERROR
    assert line.entry_id == b"1700000000000-0"


def test_json_lines_are_the_json_formatters() -> None:
    fields = entry(4)
    line = TailView(JsonLineFormatter(), RecordFilter()).render(b"5-1", fields)
    assert isinstance(line, TailLine)
    assert line.text == JsonLineFormatter().format(b"5-1", fields)
    parsed = json.loads(line.text)
    assert parsed["msg"] == "record 4 of app.web"
    assert parsed["logrelay"]["entry_id"] == "5-1"


def test_an_entry_the_filter_leaves_out_is_none() -> None:
    errors_only = view(RecordFilter.build(level=logging.ERROR))
    assert errors_only.render(b"1-0", entry(1, level=logging.WARNING)) is None
    assert isinstance(errors_only.render(b"1-0", entry(1, level=logging.CRITICAL)), TailLine)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({b"v": b"2"}, "unsupported entry schema version b'2'"),
        ({b"record": b'{"name": "x", "msg": '}, "record is not valid JSON"),
        ({b"record": b"[1, 2]"}, "record is not a JSON object"),
    ],
)
def test_an_entry_that_cannot_be_read_is_a_note_whatever_the_filter(change: dict[bytes, bytes], reason: str) -> None:
    fields = {**entry(1), **change}
    for record_filter in (RecordFilter(), RecordFilter.build(level=logging.CRITICAL, grep="nothing like it")):
        outcome = view(record_filter).render(b"9-2", fields)
        assert isinstance(outcome, Unrenderable)
        assert reason in outcome.reason
        assert outcome.note().startswith("entry 9-2 skipped: ")
        assert "\n" not in outcome.note()
    no_record = {key: value for key, value in entry(1).items() if key != b"record"}
    outcome = view().render(b"9-3", no_record)
    assert isinstance(outcome, Unrenderable)
    assert outcome.reason == "entry has no record field"


def test_a_value_the_format_cannot_render_is_the_placeholder_as_in_the_file() -> None:
    fields = entry(1)
    record = json.loads(fields[b"record"])
    record["lineno"] = "not a number"
    outcome = view(fmt="%(lineno)d %(message)s").render(b"3-0", {**fields, b"record": json.dumps(record).encode()})
    assert isinstance(outcome, TailLine)
    assert outcome.text.startswith(b"- ")


def test_an_entry_that_cannot_be_rendered_is_a_note_not_a_crash() -> None:
    outcome = view(fmt="%(lineno)d %(message)s").render(b"3-0", {**entry(1), b"record": b'{"broken": }'})
    assert isinstance(outcome, Unrenderable)
    assert outcome.reason.startswith("record is not valid JSON")


def newest_first(entries: list[Entry], size: int) -> list[list[Entry]]:
    """``entries`` (oldest first) as XREVRANGE pages of ``size``."""
    reversed_entries = entries[::-1]
    return [reversed_entries[start : start + size] for start in range(0, len(reversed_entries), size)]


def seqs(outcomes: list[TailLine | Unrenderable]) -> list[int | str]:
    """Each line's record number (the message's), or "note" for a note."""
    found: list[int | str] = []
    for outcome in outcomes:
        if isinstance(outcome, TailLine):
            found.append(int(outcome.text.split(b"] record ")[1].split()[0]))
        else:
            found.append("note")
    return found


def test_the_collector_keeps_the_newest_n_matches_across_pages_oldest_first() -> None:
    entries = [
        (b"%d-0" % (seq + 1), entry(seq, level=logging.ERROR if seq % 5 == 0 else logging.INFO)) for seq in range(50)
    ]
    collector = NewestCollector(view(RecordFilter.build(level=logging.ERROR)), 4)
    pages = newest_first(entries, 7)
    fed = 0
    for page in pages:
        fed += 1
        if collector.add_page(page):
            break
    assert seqs(collector.oldest_first()) == [30, 35, 40, 45]
    assert collector.done
    assert collector.found == 4
    assert fed == 3  # 45, 40, 35 in the first two pages of 7 (49..36), 30 in the third
    assert collector.scanned == 20  # 49 down to 30: the rest of the third page is left alone


def test_the_collector_keeps_notes_in_place_without_counting_them() -> None:
    entries = [(b"%d-0" % (seq + 1), entry(seq)) for seq in range(6)]
    entries[4] = (b"5-0", {**entries[4][1], b"v": b"9"})
    collector = NewestCollector(view(), 3)
    assert collector.add_page(entries[::-1])
    assert seqs(collector.oldest_first()) == [2, 3, "note", 5]


def test_the_collector_with_too_few_matches_returns_what_it_found() -> None:
    entries = [(b"%d-0" % (seq + 1), entry(seq)) for seq in range(3)]
    collector = NewestCollector(view(), 10)
    assert not collector.add_page(entries[::-1])
    assert not collector.done
    assert seqs(collector.oldest_first()) == [0, 1, 2]


@pytest.mark.parametrize(
    ("entry_id", "previous"),
    [
        (b"5-3", b"5-2"),
        (b"5-0", b"4-18446744073709551615"),
        (b"1700000000000-0", b"1699999999999-18446744073709551615"),
        (b"0-1", b"0-0"),
        (b"0-0", None),
        (b"7", b"6-18446744073709551615"),
    ],
)
def test_previous_id_is_the_largest_id_below(entry_id: bytes, previous: bytes | None) -> None:
    assert previous_id(entry_id) == previous
