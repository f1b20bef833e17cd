"""Rendering stream entries as lines, text and JSON."""

from __future__ import annotations

import json
import logging
import logging.handlers
import time

import pytest

from consumers.formatting import DEFAULT_FORMAT, EntryError, JsonLineFormatter, LineFormatter, build_formatter
from relay.wire import FrameDecoder, Record


def entry_for(record: logging.LogRecord, client: bytes = b"10.1.2.3:4000") -> dict[bytes, bytes]:
    """The stream entry a catcher makes of ``record`` (through the real decoder)."""
    frame = logging.handlers.SocketHandler("unused", 0).makePickle(record)
    (event,) = FrameDecoder().feed(frame)
    assert isinstance(event, Record)
    return {b"v": b"1", b"record": event, b"client": client, b"catcher": b"c1", b"received": b"1700000000.5"}


def make_record(msg: str = "hello %s", args: tuple[object, ...] = ("world",), **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("app.web", logging.WARNING, "/srv/app/web.py", 7, msg, args, None, func="handle")
    record.__dict__.update(extra)
    return record


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
