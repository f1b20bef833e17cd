"""Text lines rendered in C from a record's JSON (consumers/_read_replies_lines.c) against the Python path.

The contract: for every entry, ``LineFormatter.format_items`` writes what
``format_items_python`` writes (itself checked against ``format`` and
``logging.Formatter`` in test_formatting.py), whether the C renderer takes
the entry or leaves it to Python.  Checked here on generated records,
written by several JSON encoders (escapes, non-ASCII, duplicate keys), on
mutated bytes, and on the values the renderer leaves alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import orjson
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from consumers import read_replies
from consumers.formatting import DEFAULT_FORMAT, LineFormatter, text_plan
from tests.support.entries import all_at_once, entry_for, make_record, one_by_one, reply_item
from tests.support.strategies import fuzz, seq_values

needs_c = pytest.mark.skipif(read_replies.text_lines is None, reason="the C renderer is not built here")

FORMATS = [
    "%(asctime)s %(levelname)s %(name)s %(message)s",
    DEFAULT_FORMAT,
    "%(message)s",
    "[%(entry_id)s] %(received)s %(catcher)s 100%% %(lineno)s %(thread)s %(request_id)s %(msg)s %(exc_info)s",
    "%(name)s|%(missing)s|%(user)s|%(created)s",
    "%%(name)s is literal, 100%% %(name)s",
]

BASE = json.loads(entry_for(make_record())[b"record"])


def item(n: int, record: bytes, **fields: bytes) -> list[object]:
    entry = {b"v": b"1", b"record": record, b"client": b"10.1.2.3:4000", b"catcher": b"c1", b"received": b"1.5"}
    return reply_item(b"1700000000000-%d" % n, {**entry, **{name.encode(): value for name, value in fields.items()}})


def python_lines(formatter: LineFormatter, items: list[list[object]]) -> list[bytes]:
    """The Python path's lines, its left-over entries filled in by format()."""
    lines: list[bytes] = []
    for piece in formatter.format_items_python(items):
        if isinstance(piece, bytes):
            lines += [line + b"\n" for line in piece.split(b"\n")[:-1]]
        else:
            lines += one_by_one(formatter, [items[piece]])
    return lines


def c_pieces(formatter: LineFormatter, items: list[list[object]]) -> list[bytes | int]:
    """What the C renderer alone makes of ``items`` (before format_items hands its leftovers to Python)."""
    assert read_replies.text_lines is not None
    assert formatter.plan is not None
    metadata, second_text = formatter._metadata.texts, formatter._formatter.second_bytes
    return read_replies.text_lines(items, formatter.plan, metadata, second_text, lambda record: True)


def assert_same(fmt: str, items: list[list[object]]) -> None:
    formatter = LineFormatter(fmt, placeholder="<%none>")
    assert all_at_once(formatter, items) == python_lines(formatter, items)


# --------------------------------------------------------------------------- which formats


@pytest.mark.parametrize("fmt", FORMATS)
def test_formats_of_plain_fields_have_a_plan(fmt: str) -> None:
    assert text_plan(fmt, "-") is not None


@pytest.mark.parametrize(
    "fmt",
    [
        "%(process)d %(message)s",
        "%(message)r",
        "%(levelname)-8s %(message)s",
        "%(args)s %(message)s",
    ],
)
def test_other_formats_stay_in_python(fmt: str) -> None:
    assert text_plan(fmt, "-") is None
    formatter = LineFormatter(fmt)
    assert formatter.plan is None
    items = [item(0, entry_for(make_record())[b"record"])]
    assert all_at_once(formatter, items) == one_by_one(formatter, items)


def test_the_plan_cuts_the_format_into_text_and_fields() -> None:
    segments, keys, required, placeholder = text_plan("%(asctime)s %(lineno)s %(user)s 5%% [%(client)s]", "?") or ()
    assert keys == (b"msg", b"created", b"msecs", b"exc_info", b"exc_text", b"stack_info", b"lineno", b"user")
    assert required == 7  # lineno is a standard attribute; user is an extra, rendered "?" when missing
    assert segments == (-2, b" ", 6, b" ", 7, b" 5% [", -3, b"]")
    assert placeholder == b"?"


# --------------------------------------------------------------------------- the C path is taken


@needs_c
def test_usual_entries_are_rendered_in_one_piece_by_c() -> None:
    formatter = LineFormatter(DEFAULT_FORMAT)
    items = [item(n, entry_for(make_record(f"record {n}", ()))[b"record"]) for n in range(20)]
    pieces = formatter.format_items(items)
    assert len(pieces) == 1
    assert isinstance(pieces[0], bytes)
    assert pieces[0].count(b"\n") == 20
    assert all_at_once(formatter, items) == one_by_one(formatter, items)


@needs_c
@pytest.mark.parametrize(
    "changes",
    [
        {"msg": 1.5},  # floats: repr() differs from JSON text in places
        {"msg": {"a": 1}},
        {"msg": [1, 2]},
        {"msg": 12345678901234567890},  # more than 18 digits
        {"exc_info": ["KeyError", None]},
        {"exc_text": 7},
        {"created": "yesterday"},
        {"msecs": 1000.0},
        {"msecs": -1.0},
        {"created": 1e16},
    ],
)
def test_values_the_renderer_leaves_go_to_python_one_entry_at_a_time(changes: dict[str, Any]) -> None:
    odd = item(1, json.dumps({**BASE, **changes}).encode())
    items = [item(0, json.dumps(BASE).encode()), odd, item(2, json.dumps(BASE).encode())]
    formatter = LineFormatter("%(asctime)s %(message)s")
    pieces = c_pieces(formatter, items)
    assert [type(piece) for piece in pieces] == [bytes, int, bytes]
    assert pieces[1] == 1
    assert all_at_once(formatter, items) == python_lines(formatter, items)


@needs_c
@pytest.mark.parametrize(
    "member",
    [
        b'"msg": true', b'"msg": false', b'"msg": null', b'"msg": -5', b'"msg": 123456789012345678',
        b'"msg": ""', b'"exc_text": false', b'"exc_text": ""', b'"stack_info": null', b'"created": 17e8',
        b'"msecs": 0', b'"msecs": 999.9999',
    ],
)  # fmt: skip
def test_values_the_renderer_takes_itself(member: bytes) -> None:
    items = [item(0, json.dumps(BASE).encode()[:-1] + b", " + member + b"}")]
    formatter = LineFormatter("%(asctime)s %(message)s")
    pieces = c_pieces(formatter, items)
    assert [type(piece) for piece in pieces] == [bytes]
    assert pieces == formatter.format_items_python(items)


@needs_c
@pytest.mark.parametrize("number", [b"-0", b"1234567890123456789", b"-1234567890123456789", b"1.0", b"1e2"])
def test_numbers_whose_text_python_would_change_are_left_to_it(number: bytes) -> None:
    # -0 is 0 as a Python int; 19 digits may not fit the 64 bits orjson reads as int; floats get repr().
    items = [item(0, json.dumps(BASE).encode()[:-1] + b', "msg": ' + number + b"}")]
    formatter = LineFormatter("%(message)s")
    assert c_pieces(formatter, items) == [0]
    assert all_at_once(formatter, items) == python_lines(formatter, items)


@needs_c
@pytest.mark.parametrize(
    "text",
    [
        'tab\tquote" back\\ slash/ nul\x00 é 東京 🎉 \u2028',
        "ends in a backslash\\",
        '\\"\\\\""',  # escaped backslashes and quotes back to back
        '"' * 3 + "x" * 300 + "\\",  # escapes on both sides of a long plain stretch
    ],
)
def test_escapes_and_non_ascii_are_decoded_as_python_decodes_them(text: str) -> None:
    items = [item(0, json.dumps({**BASE, "msg": text}, ensure_ascii=ascii).encode()) for ascii in (True, False)]
    formatter = LineFormatter("%(message)s|%(name)s")
    pieces = formatter.format_items(items)
    assert pieces == [(text + "|" + BASE["name"] + "\n").encode() * 2]


@needs_c
@pytest.mark.parametrize(
    ("created", "msecs"),
    [
        (b"1700000000", b"0"),
        (b"1700000000.9999989", b"999.9999989"),  # near the next second, below it as a double too
        (b"1700000000.99999999999", b"999.9"),  # as a double, the next second
        (b"1700000000.5", b"999.99999999999999"),  # as a double, msecs is 1000.0
        (b"9999999999.25", b"250"),
        (b"99999999999.999995", b"250"),  # eleven digits: as a double, the next second
        (b"-1.5", b"500"),
        (b"17e8", b"5e2"),
        (b"1700000000", b"123456789012345678901234567890"),  # more digits than a long long holds
    ],
)
def test_asctime_follows_the_double_of_created_and_msecs(created: bytes, msecs: bytes) -> None:
    # The renderer takes the usual numbers' seconds from their digits; where
    # the digits and the double could disagree, it asks the double.
    record = json.dumps(BASE).encode()[:-1] + b', "created": ' + created + b', "msecs": ' + msecs + b"}"
    formatter = LineFormatter("%(asctime)s %(message)s")
    items = [item(0, record)]
    assert all_at_once(formatter, items) == python_lines(formatter, items)


@needs_c
@pytest.mark.parametrize("msg", ['"\\ud83c"', '"\\udf89"', '"\\ud83c\\u0041"'])
def test_lone_surrogates_are_left_to_python(msg: str) -> None:
    record = json.dumps(BASE).encode().replace(b'"msg": "hello world"', b'"msg": ' + msg.encode())
    assert b'"msg": ' + msg.encode() in record
    items = [item(0, record)]
    formatter = LineFormatter("%(message)s")
    assert formatter.format_items(items) == formatter.format_items_python(items)
    assert all_at_once(formatter, items) == python_lines(formatter, items)


@needs_c
def test_a_key_given_twice_renders_its_last_value_and_an_escaped_key_goes_to_python() -> None:
    body = json.dumps(BASE).encode()[:-1]
    twice = item(0, body + b', "name": "second"}')
    escaped = item(1, body + b', "n\\u0061me": "escaped"}')
    formatter = LineFormatter("%(name)s")
    assert c_pieces(formatter, [twice]) == [b"second\n"]
    assert c_pieces(formatter, [escaped]) == [0]
    assert all_at_once(formatter, [twice, escaped]) == [b"second\n", b"escaped\n"]


@needs_c
def test_metadata_and_time_follow_each_entry() -> None:
    formatter = LineFormatter("%(asctime)s|%(client)s|%(catcher)s|%(received)s|%(entry_id)s")
    items = []
    for n, created in enumerate([1700000000.25, 1700000000.999, 1700000001.0, 1699999999.5, 1700000001.001]):
        record = json.dumps({**BASE, "created": created, "msecs": (created % 1) * 1000}).encode()
        client = b"10.0.0.%d:1" % (n % 2)
        items.append(item(n, record, client=client, received=b"1700000000.%06d" % n, catcher="Köln".encode()))
    assert all_at_once(formatter, items) == python_lines(formatter, items)
    assert [type(piece) for piece in formatter.format_items(items)] == [bytes]


# --------------------------------------------------------------------------- generated and mutated records

scalars = st.one_of(
    st.text(max_size=20),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
NAMES = ["msg", "created", "msecs", "exc_info", "exc_text", "stack_info", "name", "levelname", "lineno", "thread"]
NAMES += ["request_id", "user", "missing", "message", "asctime", "client"]


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """A record's JSON: the base record with some attributes changed or removed, written by one of three encoders."""
    record: dict[str, Any] = dict(BASE)
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=5)):
        # Without created, format() takes the time of formatting (makeLogRecord): not comparable.
        if draw(st.booleans()) or name in ("created", "msecs"):
            record[name] = draw(values)
        else:
            record.pop(name, None)
    if draw(st.booleans()):
        record["created"] = draw(st.floats(-1e10, 1e10) | st.integers(-(10**10), 10**10))
        record["msecs"] = draw(st.floats(0, 999.9999) | st.integers(0, 999))
    encoder = draw(st.sampled_from(["orjson", "ascii", "spaced"]))
    if encoder == "orjson":
        with contextlib.suppress(TypeError):  # ints beyond 64 bits: the catcher's stdlib fallback
            return orjson.dumps(record)
    if encoder == "ascii":
        return json.dumps(record, ensure_ascii=True).encode()
    return json.dumps(record, ensure_ascii=False, indent=1).encode()


@fuzz(400)
@given(st.lists(records(), min_size=1, max_size=4), st.sampled_from(FORMATS), seq_values(max_size=4))
def test_generated_records_render_as_the_python_path_renders_them(
    batch: list[bytes], fmt: str, seqs: list[bytes | None]
) -> None:
    """With a seq field or not (the entry is usual either way, and seq renders nowhere)."""
    seqs = [*seqs, *[None] * len(batch)][: len(batch)]
    pairs = enumerate(zip(batch, seqs, strict=True))
    items = [item(n, record) if seq is None else item(n, record, seq=seq) for n, (record, seq) in pairs]
    assert_same(fmt, items)
    formatter = LineFormatter(fmt, placeholder="<%none>")
    assert all_at_once(formatter, items) == all_at_once(formatter, [item(n, record) for n, record in enumerate(batch)])


@fuzz(400)
@given(
    st.lists(
        st.tuples(st.integers(0, 5000), st.integers(0, 255), st.sampled_from([b"", b"}", b"{", b'"', b"\\", b","])),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(FORMATS),
)
def test_mutated_records_render_as_the_python_path_renders_them(
    mutations: list[tuple[int, int, bytes]], fmt: str
) -> None:
    records = [bytearray(json.dumps({**BASE, "n": n}, ensure_ascii=n % 2 == 0).encode()) for n in range(3)]
    for number, (position, byte, insert) in enumerate(mutations):
        record = records[number % 3]
        at = position % len(record)
        record[at] = byte
        record[at:at] = insert
    for record in records:
        # A record that lost created or msecs gets the time of formatting (makeLogRecord): not comparable.
        with contextlib.suppress(ValueError):
            parsed = json.loads(record)
            assume(not isinstance(parsed, dict) or {"created", "msecs"} <= parsed.keys())
    assert_same(fmt, [item(n, bytes(record)) for n, record in enumerate(records)])


def test_without_the_extension_every_entry_goes_through_python(monkeypatch: pytest.MonkeyPatch) -> None:
    from consumers import formatting

    monkeypatch.setattr(formatting, "text_lines", None)
    formatter = LineFormatter(DEFAULT_FORMAT)
    assert formatter.plan is None
    items = [item(0, json.dumps(BASE).encode())]
    assert formatter.format_items(items) == formatter.format_items_python(items)
    assert logging.getLevelName(logging.WARNING) in formatter.format_items(items)[0].decode()  # type: ignore[union-attr]
