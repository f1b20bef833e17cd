"""Rendering stream entries as lines, text and JSON."""

from __future__ import annotations

import json
import logging
import logging.handlers
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.formatting import (
    DEFAULT_FORMAT,
    EntryError,
    JsonLineFormatter,
    LineFormatter,
    build_formatter,
)
from tests.support.entries import all_at_once, entry_for, make_record, one_by_one, reply_item
from tests.support.strategies import fuzz


def test_text_lines_render_as_logging_formatter_would() -> None:
    record = make_record(user="ana")
    fmt = "%(asctime)s|%(levelname)s|%(name)s|%(process)d|%(funcName)s|%(user)s|%(message)s"
    line = LineFormatter(fmt).format(b"1-0", entry_for(record))
    # What logging.Formatter makes of the record as the sender pickled it.
    sent = dict(record.__dict__, msg=record.getMessage(), args=None)
    assert line.decode() == logging.Formatter(fmt).format(logging.makeLogRecord(sent)) + "\n"
    assert line.decode().split("|")[1:] == ["WARNING", "app.web", str(record.process), "handle", "ana", "hello world\n"]


def test_relay_metadata_is_available_as_attributes() -> None:
    line = LineFormatter("%(client)s %(catcher)s %(received)s %(entry_id)s %(message)s").format(
        b"1700000000000-3", entry_for(make_record())
    )
    assert line == b"10.1.2.3:4000 c1 1700000000.5 1700000000000-3 hello world\n"


def test_missing_attributes_render_as_placeholder_for_any_conversion() -> None:
    formatter = LineFormatter("%(request_id)s %(status)d %(latency)5.1f %(message)s", placeholder="?")
    with_all = formatter.format(b"1-0", entry_for(make_record(request_id="r1", status=200, latency=1.25)))
    without = formatter.format(b"1-1", entry_for(make_record()))
    assert with_all == b"r1 200   1.2 hello world\n"
    assert without == b"? ? ? hello world\n"


def test_a_value_its_conversion_refuses_renders_as_placeholder_not_a_dead_letter() -> None:
    # HTTPHandler and senders with logProcesses off send process None;
    # an extra may be text where the format wants a number.
    formatter = LineFormatter("%(process)d %(status)03d 100%% %(levelname)s %(message)s", placeholder="?")
    odd = formatter.format(b"1-0", entry_for(make_record("done", (), process=None, status="ok")))
    usual = formatter.format(b"1-1", entry_for(make_record("done", (), process=42, status=7)))
    assert odd == b"? ? 100% WARNING done\n"
    assert usual == b"42 007 100% WARNING done\n"
    assert formatter.unrenderable == "%(status)03d: TypeError: %d format: a real number is required, not str"
    items = [reply_item(b"1-%d" % n, entry_for(make_record("done", (), process=None, status="ok"))) for n in range(3)]
    assert all_at_once(formatter, items) == one_by_one(formatter, items)


def test_exception_and_stack_text_are_appended_like_formatter() -> None:
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    record.stack_info = "Stack (most recent call last):\n  somewhere"
    text = LineFormatter("%(levelname)s %(message)s").format(b"1-0", entry_for(record)).decode()
    lines = text.splitlines()
    assert lines[0] == "ERROR failed"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-3] == "RuntimeError: kaput"
    assert lines[-2:] == ["Stack (most recent call last):", "  somewhere"]


def test_message_with_percent_signs_is_not_formatted_again() -> None:
    line = LineFormatter("%(message)s").format(b"1-0", entry_for(make_record("100%% of %s", ("disk",))))
    assert line == b"100% of disk\n"


@pytest.mark.parametrize(
    "fmt", ["%%(x)s is literal: %(name)s", "100%% %(message)s %%", "%%%(name)s%%", "%%(name)s %(status)s"]
)
def test_doubled_percent_signs_are_literal_text_as_in_logging(fmt: str) -> None:
    record = make_record()
    formatter = LineFormatter(fmt)
    # logging raises for a missing field; ours renders the placeholder there.
    reference = logging.Formatter(fmt.replace("%(status)s", "-"))
    expected = reference.format(logging.makeLogRecord(json.loads(entry_for(record)[b"record"])))
    line = (expected + "\n").encode()
    assert formatter.format(b"1-0", entry_for(record)) == line
    assert all_at_once(formatter, [reply_item(b"1-0", entry_for(record))]) == [line]


def test_non_ascii_survives() -> None:
    line = LineFormatter("%(name)s %(message)s").format(b"1-0", entry_for(make_record("Grüße %s", ("東京 ✓",))))
    assert line.decode() == "app.web Grüße 東京 ✓\n"


def test_json_lines_carry_the_record_at_top_level_and_metadata_under_one_key() -> None:
    record = make_record(order_id=42, tags=["a"])
    line = JsonLineFormatter().format(b"1700000000000-0", entry_for(record))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    data = json.loads(line)
    assert data["msg"] == "hello world"
    assert data["order_id"] == 42
    assert data["tags"] == ["a"]
    assert data["created"] == record.created
    assert data["logrelay"] == {
        "client": "10.1.2.3:4000",
        "catcher": "c1",
        "received": 1700000000.5,
        "entry_id": "1700000000000-0",
    }
    # makeLogRecord restores the record from the line, minus our key.
    restored = logging.makeLogRecord({k: v for k, v in data.items() if k != "logrelay"})
    assert restored.getMessage() == "hello world"
    assert restored.levelno == logging.WARNING


def test_json_record_with_its_own_logrelay_attribute_is_merged_not_doubled() -> None:
    line = JsonLineFormatter().format(b"1-0", entry_for(make_record(logrelay="user value")))
    data = json.loads(line)
    assert isinstance(data["logrelay"], dict)
    assert line.count(b'"logrelay"') == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({b"v": b"2", b"record": b"{}"}, "schema version"),
        ({b"v": b"1"}, "no record"),
        ({b"v": b"1", b"record": b"{not json}"}, "not valid JSON"),
        ({b"v": b"1", b"record": b"[1, 2]"}, "not a JSON object"),
        ({b"v": b"1", b"record": b'{"a": NaN}'}, "not valid JSON"),
        ({b"v": b"1", b"record": b'{"a": Infinity, "logrelay": 1}'}, "not valid JSON"),
        ({b"v": b"1", b"record": b'{"a": "\xff"}'}, "not valid JSON"),
        ({b"v": b"1", b"record": b'{"a": "\xed\xa0\x80"}'}, "not valid JSON"),  # a surrogate in UTF-8
    ],
)
@pytest.mark.parametrize("spec", [DEFAULT_FORMAT, "json"])
def test_broken_entries_raise_entry_error(fields: dict[bytes, bytes], message: str, spec: str) -> None:
    with pytest.raises(EntryError, match=message):
        build_formatter(spec).format(b"1-0", fields)


@pytest.mark.parametrize("fmt", ["plain text", "%(message", "%(message)q"])
def test_invalid_format_strings_are_refused_up_front(fmt: str) -> None:
    with pytest.raises(ValueError, match="format string"):
        LineFormatter(fmt)


def test_asctime_uses_the_records_creation_time() -> None:
    record = make_record()
    record.created = time.mktime((2030, 1, 2, 3, 4, 5, 0, 0, -1))
    record.msecs = 0
    line = LineFormatter("%(asctime)s").format(b"1-0", entry_for(record))
    assert line == b"2030-01-02 03:04:05,000\n"


def test_a_record_without_the_standard_attributes_gets_makelogrecords_defaults() -> None:
    fields = {b"v": b"1", b"record": json.dumps({"msg": "bare", "levelname": "INFO"}).encode()}
    line = LineFormatter("%(levelname)s %(name)s %(lineno)d %(message)s").format(b"1-0", fields)
    # makeLogRecord's defaults: name None, lineno 0
    assert line == b"INFO None 0 bare\n"


@pytest.mark.parametrize(
    "created",
    [
        [1700000000.25, 1700000000.75, 1700000001.0, 1700000000.5, 1700003600.1],  # same second, next, back, hour
        [-1.5, -1.0, -0.25, 0.0, 0.999],  # before the epoch: seconds round down
    ],
)
def test_asctime_matches_logging_for_records_in_and_across_seconds(created: list[float]) -> None:
    formatter = LineFormatter("%(asctime)s")
    stdlib = logging.Formatter("%(asctime)s")
    for n, when in enumerate(created):
        record = make_record()
        record.created = when
        record.msecs = (when - int(when)) * 1000
        line = formatter.format(f"1-{n}".encode(), entry_for(record))
        sent = dict(record.__dict__, msg=record.getMessage(), args=None)
        assert line.decode() == stdlib.format(logging.makeLogRecord(sent)) + "\n", when


def test_metadata_follows_each_entry_when_clients_interleave() -> None:
    text = LineFormatter("%(client)s %(catcher)s %(received)s %(entry_id)s")
    as_json = JsonLineFormatter()
    entries = [
        (b"1-0", entry_for(make_record(), client=b"10.0.0.1:1")),
        (b"1-1", entry_for(make_record(), client=b"10.0.0.2:2")),
        (b"1-2", {**entry_for(make_record(), client=b"10.0.0.2:2"), b"received": b"not a time"}),
        (b"1-3", {k: v for k, v in entry_for(make_record()).items() if k not in (b"client", b"catcher")}),
        (b"1-4", entry_for(make_record(), client=b"")),
        (b'forged"id', entry_for(make_record(), client=b"10.0.0.1:1")),
    ]
    expected = [
        ("10.0.0.1:1", "c1", 1700000000.5, "1-0"),
        ("10.0.0.2:2", "c1", 1700000000.5, "1-1"),
        ("10.0.0.2:2", "c1", "not a time", "1-2"),
        ("-", "-", 1700000000.5, "1-3"),
        ("", "c1", 1700000000.5, "1-4"),
        ("10.0.0.1:1", "c1", 1700000000.5, 'forged"id'),
    ]
    for (entry_id, fields), (client, catcher, received, shown_id) in zip(entries, expected, strict=True):
        assert text.format(entry_id, fields).decode() == f"{client} {catcher} {received} {shown_id}\n"
        metadata = json.loads(as_json.format(entry_id, fields))["logrelay"]
        assert metadata == {"client": client, "catcher": catcher, "received": received, "entry_id": shown_id}


@pytest.mark.parametrize("extra", [{}, {"logrelay": "its own"}])
def test_a_lone_surrogate_the_catcher_escaped_is_written_not_dead_lettered(extra: dict[str, str]) -> None:
    # A str with no UTF-8 form (decoded with surrogateescape from broken
    # bytes): the catcher writes it as a \udcff escape, which orjson refuses.
    record = make_record("file %s", ("caf\udcff.txt",), **extra)
    fields = entry_for(record)
    assert b"\\udcff" in fields[b"record"]
    text = LineFormatter("%(message)s").format(b"1-0", fields)
    assert text == b"file caf\\udcff.txt\n"
    line = JsonLineFormatter().format(b"1-0", fields)
    data = json.loads(line)
    assert data["msg"] == "file caf\udcff.txt"
    assert data["logrelay"]["entry_id"] == "1-0"


@pytest.mark.parametrize("record", [b"{}", b"{ }", b" {\n\t} ", b'{"a":1}', b'{ "a" : 1 }'])
def test_json_lines_of_small_and_spaced_records_are_valid_json(record: bytes) -> None:
    line = JsonLineFormatter().format(b"1-0", {b"v": b"1", b"record": record, b"client": b"c"})
    data = json.loads(line)
    assert data["logrelay"]["entry_id"] == "1-0"
    assert {key: value for key, value in data.items() if key != "logrelay"} == json.loads(record)


# --------------------------------------------------------------------------- a reply's entries in one call


def usual(n: int, client: bytes = b"10.1.2.3:4000", received: bytes = b"1700000000.500000") -> list[object]:
    fields = entry_for(make_record(f"record {n}", (), n=n), client=client)
    return reply_item(b"1700000000000-%d" % n, {**fields, b"received": received})


def unusual_items() -> list[list[object]]:
    """Entries the C path must leave to format(), each next to usual ones."""
    base = entry_for(make_record())
    record = base[b"record"]
    reordered = {b"record": record, **{k: v for k, v in base.items() if k != b"record"}}
    return [
        reply_item(b"1-0", {**base, b"v": b"2"}),
        reply_item(b"1-1", reordered),
        reply_item(b"1-2", {k: v for k, v in base.items() if k != b"client"}),
        reply_item(b'forged"id', base),
        reply_item(b"1-4", {**base, b"record": b" " + record}),
        reply_item(b"1-5", {**base, b"record": record[:-1] + b',"logrelay":"its own"}'}),
        reply_item(b"1-6", {**base, b"record": b'{"broken": }'}),
        reply_item(b"1-7", {**base, b"record": b'{"path":"caf\\udcff.txt"}'}),
        reply_item(b"1-8", {**base, b"record": b"[1, 2]"}),
        reply_item(b"1-9", {**base, b"client": "Köln:1".encode(), b"catcher": b'c"1'}),
        reply_item(b"1-10", {**base, b"received": b"not a time"}),
        reply_item(b"1-11", {**base, b"record": b"{}"}),
        reply_item(b"1-12", {**base, b"record": b"{ }"}),
        reply_item(b"1-13", {**base, b"extra": b"field"}),
        # "logrelay" anywhere the bytes can be: deeper down, as a value, after
        # an escaped quote, at the end of a longer name.
        reply_item(b"1-14", {**base, b"record": record[:-1] + b',"x":{"logrelay":1}}'}),
        reply_item(b"1-15", {**base, b"record": record[:-1] + b',"x":"logrelay"}'}),
        reply_item(b"1-16", {**base, b"record": record[:-1] + b',"x":"say \\"logrelay"}'}),
        reply_item(b"1-17", {**base, b"record": record[:-1] + b',"xlogrelay":1,"logrelays":2}'}),
        reply_item(b"1-18", {**base, b"record": b'{"created":1.5,"msecs":500.0,"logrelay":{"entry_id":"forged"}}'}),
    ]


def test_format_items_writes_exactly_what_format_writes_entry_by_entry() -> None:
    formatter = JsonLineFormatter()
    items: list[list[object]] = []
    for n, odd in enumerate(unusual_items()):
        # Runs of entries that share client and receive time, and some that do not.
        items += [usual(3 * n), odd, usual(3 * n + 1, client=b"10.9.9.9:1"), usual(3 * n + 2, received=b"1.0")]
    assert all_at_once(formatter, items) == one_by_one(formatter, items)


def test_format_items_renders_the_usual_entries_in_one_piece() -> None:
    from consumers import read_replies

    if read_replies.IMPLEMENTATION != "c":
        pytest.skip("the C renderer is not built here")
    formatter = JsonLineFormatter()
    items = [usual(n, received=b"1700000000.%06d" % (n // 10)) for n in range(50)]
    pieces = formatter.format_items(items)
    assert len(pieces) == 1
    assert isinstance(pieces[0], bytes)
    assert [json.loads(line)["n"] for line in pieces[0].splitlines()] == list(range(50))
    # {} and { } take no comma; anything else is left to format(), by index.
    small = [reply_item(b"1-0", {**entry_for(make_record()), b"record": b"{}"}), usual(1)]
    assert formatter.format_items(small)[0].startswith(b'{"logrelay":')  # type: ignore[union-attr]
    assert formatter.format_items([usual(0), unusual_items()[0], usual(1)])[1] == 1


def unusual_text_items() -> list[list[object]]:
    """Records the text fast path must render as logging would, or leave to format()."""
    base = entry_for(make_record())
    record = json.loads(base[b"record"])

    def with_record(entry_id: bytes, **changes: object) -> list[object]:
        changed = {key: value for key, value in {**record, **changes}.items() if value is not ...}
        return reply_item(entry_id, {**base, b"record": json.dumps(changed).encode()})

    # Records without "created" get the time of formatting from makeLogRecord: not comparable.
    complete = [item for item in unusual_items() if item[0] not in (b"1-7", b"1-11", b"1-12")]
    return [
        *complete,
        with_record(b"2-0", exc_text="Traceback (most recent call last):\n  boom"),
        with_record(b"2-1", stack_info="Stack (most recent call last):\n  here"),
        with_record(b"2-2", exc_text="tb", stack_info="st", msg="ends with a newline\n"),
        with_record(b"2-3", exc_info=["KeyError", "x", None]),
        with_record(b"2-4", created="yesterday"),
        with_record(b"2-5", msecs=None),
        with_record(b"2-6", msg={"a": [1, 2]}),
        with_record(b"2-7", msg="100% done %s %(x)s"),
        with_record(b"2-8", process=...),
        with_record(b"2-9", name="Grüße aus Köln \udcff"),
        with_record(b"2-10", client="from the record", message="overwritten", asctime="overwritten"),
        reply_item(b"2-11", {**base, b"received": b"1700000001.25"}),
    ]


@pytest.mark.parametrize(
    "fmt",
    [
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        DEFAULT_FORMAT,
        "%(process)d %(latency)5.1f %(funcName)s|%(client)s|%(entry_id)s|%(received)s|%(message)r",
        "%(message)s",
    ],
)
def test_text_format_items_writes_exactly_what_format_writes(fmt: str) -> None:
    formatter = LineFormatter(fmt)
    items: list[list[object]] = []
    for n, odd in enumerate(unusual_text_items()):
        items += [usual(2 * n), odd, usual(2 * n + 1, client=b"10.9.9.9:1")]
    assert all_at_once(formatter, items) == one_by_one(formatter, items)


def test_text_format_items_renders_the_usual_entries_in_one_piece() -> None:
    pieces = LineFormatter("%(n)s %(message)s").format_items([usual(n) for n in range(5)])
    assert pieces == [b"".join(b"%d record %d\n" % (n, n) for n in range(5))]


@fuzz(300)
@given(
    st.lists(
        st.tuples(st.integers(0, 5000), st.integers(0, 255), st.sampled_from([b"", b"}", b"{", b'"logrelay"', b" "])),
        max_size=6,
    )
)
def test_format_items_agrees_with_format_on_mutated_records(mutations: list[tuple[int, int, bytes]]) -> None:
    formatter = JsonLineFormatter()
    items = [usual(n) for n in range(4)]
    for number, (position, byte, insert) in enumerate(mutations):
        entry_id, flat = items[number % 4]
        assert isinstance(flat, list)
        record = bytearray(flat[3])
        record[position % len(record)] = byte
        record[position % len(record) : position % len(record)] = insert
        items[number % 4] = [entry_id, [*flat[:3], bytes(record), *flat[4:]]]
    assert all_at_once(formatter, items) == one_by_one(formatter, items)


# --------------------------------------------------------------------------- the record's identity (seq)


def with_seq(item: list[object], value: bytes) -> list[object]:
    """The entry as a catcher writes it since records have an identity: ``seq`` last."""
    entry_id, flat = item
    assert isinstance(flat, list)
    return [entry_id, [*flat, b"seq", value]]


@pytest.mark.parametrize(
    "spec",
    [
        "json",
        DEFAULT_FORMAT,
        "%(asctime)s %(levelname)s %(name)s %(message)s [%(client)s %(catcher)s %(received)s %(entry_id)s]",
        "%(seq)s %(n)s %(message)s",  # seq, a record attribute: the entry's field never stands in for it
        "%(levelname)-8s %(seq)s %(message)r",  # a format the C renderer leaves to Python
    ],
)
def test_a_seq_field_changes_no_line(spec: str) -> None:
    """An entry with seq renders exactly as the same entry without it, on every path: format(), the
    formatter's format_items (C where built) with its leftovers, and the text formatter's Python path."""
    plain: list[list[object]] = []
    for n, odd in enumerate(unusual_text_items()):
        plain += [usual(2 * n), odd, usual(2 * n + 1, client=b"10.9.9.9:1")]
    plain += [usual(100, received=b"1700000001.%06d" % n) for n in range(5)]
    seqs = [b"0123456789abcdef:%d" % (n + 1) for n in range(len(plain))]
    seqs[3:6] = [b"", b"not an identity", b"%(seq)s"]
    seq_items = [with_seq(item, value) for item, value in zip(plain, seqs, strict=True)]
    expected = one_by_one(build_formatter(spec), plain)
    assert b"seq" not in b"".join(expected).replace(b'"seq"', b"")  # the record's own attribute only
    assert one_by_one(build_formatter(spec), seq_items) == expected
    assert all_at_once(build_formatter(spec), seq_items) == all_at_once(build_formatter(spec), plain)
    assert all_at_once(build_formatter(spec), seq_items) == expected
    formatter = build_formatter(spec)
    if isinstance(formatter, LineFormatter):
        with_seq_pieces = formatter.format_items_python(seq_items)
        assert with_seq_pieces == LineFormatter(spec).format_items_python(plain)


def test_the_usual_entry_with_seq_is_rendered_in_one_piece() -> None:
    from consumers import read_replies

    items = [with_seq(usual(n), b"0123456789abcdef:%d" % (n + 1)) for n in range(20)]
    lines = one_by_one(JsonLineFormatter(), items)
    assert all(b"0123456789abcdef" not in line for line in lines)
    # The text formatter's Python path takes them (no entry left to format()); so does the C renderer.
    text = LineFormatter("%(n)s %(message)s")
    assert text.format_items_python(items) == [b"".join(b"%d record %d\n" % (n, n) for n in range(20))]
    if read_replies.IMPLEMENTATION != "c":
        return
    assert JsonLineFormatter().format_items(items) == [b"".join(lines)]
    assert text.format_items(items) == text.format_items_python(items)
