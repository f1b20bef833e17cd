"""The C check that a record is one JSON object, against orjson.

The contract of :func:`consumers.json_check.is_json_object`: True only if
``orjson.loads`` returns a dict for the same bytes (soundness), checked on
arbitrary bytes, JSON of generated values, near-JSON token soup, mutated real
records and every prefix of real records.  And True for what matters
(completeness): every real SocketHandler record and the JSON of any dict,
except the few shapes the check leaves to orjson on purpose (numbers that
may reach 1e308, nesting deeper than 128), which the edge cases pin down.
The JSON formatter writes the same bytes and raises the same errors with the
check as without it.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.frames import build_frames
from consumers import formatting, json_check
from consumers.formatting import EntryError, JsonLineFormatter
from consumers.json_check import is_json_object
from relay.decode.frames import FrameDecoder, Record
from tests.support.strategies import SEED_FRAMES, fuzz, records

needs_c = pytest.mark.skipif(json_check.IMPLEMENTATION != "c", reason="the C check is not built here")

MAX_DEPTH = 128  # the check's limit; orjson's is 1024


def orjson_object(data: bytes) -> bool:
    """Whether orjson.loads returns a dict for ``data``."""
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


def sound(data: bytes) -> bool:
    """Assert the contract for ``data``; return the check's answer."""
    answer = is_json_object(data)
    assert type(answer) is bool
    if answer:
        assert orjson_object(data), data
    return answer


def record_jsons(frames: list[bytes]) -> list[bytes]:
    events = FrameDecoder().feed(b"".join(frames))
    assert all(isinstance(event, Record) for event in events)
    return [event for event in events if isinstance(event, Record)]


SEED_RECORDS = record_jsons(SEED_FRAMES)
BENCH_RECORDS = record_jsons(build_frames(2000))


def has_huge_number(value: Any) -> bool:
    """Whether a float of 1e308 or more is in ``value``: the check leaves those to orjson."""
    if isinstance(value, float):
        return abs(value) >= 1e308
    if isinstance(value, dict):
        return any(has_huge_number(item) for item in value.values())
    if isinstance(value, list):
        return any(has_huge_number(item) for item in value)
    return False


# --------------------------------------------------------------------------- generated JSON

# orjson.dumps writes any str but lone surrogates, ints of 64 bits, and NaN
# and infinities as null.
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
any_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | any_text
    | st.sampled_from(["\x00", "\x1f\x7f", "\u2028é"])
)
any_values = st.recursive(
    any_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4), max_leaves=20
)
# What the check must take: no float of 1e308 or more (see has_huge_number).
taken_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(min_value=-1e307, max_value=1e307)
    | any_text
)
taken_values = st.recursive(
    taken_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)


@needs_c
@fuzz(1000)
@given(any_values, st.sampled_from([0, orjson.OPT_INDENT_2]))
def test_json_of_any_value_is_checked_soundly(value: object, option: int) -> None:
    sound(orjson.dumps(value, option=option))


@needs_c
@fuzz(500)
@given(st.dictionaries(any_text, taken_values, max_size=8), st.sampled_from([0, orjson.OPT_INDENT_2]))
def test_json_of_any_dict_is_taken(value: dict[str, object], option: int) -> None:
    assert is_json_object(orjson.dumps(value, option=option))
    assert is_json_object(b" \t\r\n" + orjson.dumps(value) + b"\n")


# --------------------------------------------------------------------------- arbitrary and near-JSON bytes


@needs_c
@fuzz(1000)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_are_checked_soundly(data: bytes) -> None:
    sound(data)
    sound(b"{" + data)


# Pieces that make near-valid JSON more often than random bytes do.
TOKENS = [
    *(b"{", b"}", b"[", b"]", b":", b",", b" ", b"\n", b"\x0c", b'"', b'"k"', b'"v"', b'"\\', b"\\"),
    *(b"\\n", b"\\u", b"\\ud800", b"\\udc00", b"\\u00e9", b"d83d", b"\\x", b"\xc3\xa9", b"\xc3", b"\xed\xa0\x80"),
    *(b"\xf4\x90\x80\x80", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\x01", b"\x7f", b"\xef\xbb\xbf"),
    *(b"0", b"1", b"9", b"-", b"+", b".", b"e", b"E", b"1e308", b"e400", b"00", b"true", b"false", b"null", b"tru"),
    *(b"NaN", b"Infinity"),
]


@needs_c
@fuzz(3000)
@given(st.lists(st.sampled_from(TOKENS), max_size=30))
def test_token_soup_is_checked_soundly(tokens: list[bytes]) -> None:
    data = b"".join(tokens)
    sound(data)
    sound(b"{" + data)
    sound(b'{"k":' + data + b"}")
    sound(b'{"k":[' + data + b"]}")


# --------------------------------------------------------------------------- real records


@needs_c
def test_every_record_of_the_benchmark_mix_is_taken() -> None:
    assert all(is_json_object(record) for record in BENCH_RECORDS)
    assert any(not record.isascii() for record in BENCH_RECORDS)


@needs_c
@fuzz(300)
@given(records())
def test_real_records_are_taken(case: tuple[bytes, object, object]) -> None:
    (record,) = record_jsons([case[0]])
    if is_json_object(record):
        return
    if orjson_object(record):
        assert has_huge_number(orjson.loads(record)), record
    else:
        # A lone surrogate (a str from broken input): the catcher writes it as
        # a \ud8xx escape, which orjson refuses too.
        assert b"\\ud" in record.lower(), record


@needs_c
@pytest.mark.parametrize("record", SEED_RECORDS + BENCH_RECORDS[:20])
def test_every_prefix_of_a_real_record_is_refused(record: bytes) -> None:
    assert is_json_object(record)
    for end in range(len(record)):
        assert not sound(record[:end])


@st.composite
def mutated_records(draw: st.DrawFn) -> bytes:
    """A real record's JSON with bytes flipped, inserted, deleted, overwritten or repeated."""
    source = draw(st.sampled_from(SEED_RECORDS + BENCH_RECORDS[:50]))
    body = bytearray(source)
    pieces = st.binary(min_size=1, max_size=6) | st.sampled_from(TOKENS)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "overwrite", "duplicate"]))
        at = draw(st.integers(0, max(len(body) - 1, 0)))
        if kind == "flip" and body:
            body[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            body[at:at] = draw(pieces)
        elif kind == "delete":
            del body[at : at + draw(st.integers(1, 8))]
        elif kind == "overwrite":
            chunk = draw(pieces)
            body[at : at + len(chunk)] = chunk
        else:
            body[at:at] = body[at : at + draw(st.integers(1, 16))]
    return bytes(body)


@needs_c
@fuzz(3000)
@given(mutated_records())
def test_mutated_real_records_are_checked_soundly(data: bytes) -> None:
    sound(data)


# --------------------------------------------------------------------------- edge cases

# Each is answered exactly as orjson answers it: True if and only if orjson
# returns a dict.
EDGES = [
    *(b"{}", b" {} ", b"\t\r\n{}\n", b"{ }", b'{"":0}', b'{"a":1,"a":2}', b'{"a" : [ 1 , { } ] }'),
    *(b"", b" ", b"{", b"}", b"[]", b"[{}]", b'"x"', b"1", b"null", b"{}{}", b"{} x", b"{}\x00", b"{}\x0c"),
    *(b"\x0c{}", b"\xef\xbb\xbf{}", b"{,}", b'{"a":1,}', b'{"a":[1,]}', b'{"a":[,1]}', b'{"a" 1}', b'{"a":1 "b":2}'),
    *(b"{1:2}", b"{'a':1}", b'{"a":1}}', b'{"a":[}', b'{"a":{]}', b'{"a":1]'),
    # literals
    *(b'{"a":true}', b'{"a":false}', b'{"a":null}', b'{"a":tru}', b'{"a":nulll}', b'{"a":True}', b'{"a":NaN}'),
    *(b'{"a":Infinity}', b'{"a":-Infinity}', b'{"a":undefined}'),
    # numbers
    *(b'{"a":0}', b'{"a":-0}', b'{"a":01}', b'{"a":-01}', b'{"a":00}', b'{"a":-}', b'{"a":+1}', b'{"a":1.}'),
    *(b'{"a":.5}', b'{"a":-.5}', b'{"a":1e}', b'{"a":1e+}', b'{"a":1E-5}', b'{"a":-0.0e+5}', b'{"a":1.5e3}'),
    *(b'{"a":1.2.3}', b'{"a":1e5e5}', b'{"a":0x10}', b'{"a":1_000}', b'{"a":1' + b"0" * 30 + b"}"),
    *(b'{"a":-1' + b"0" * 30 + b"}", b'{"a":18446744073709551616}', b'{"a":-9223372036854775809}'),
    *(b'{"a":1e400}', b'{"a":-1e400}', b'{"a":1e-400}', b'{"a":1e-99999999999999999999}'),
    *(b'{"a":' + b"9" * 308 + b"}", b'{"a":' + b"9" * 309 + b"}", b'{"a":' + b"9" * 310 + b"e-2}"),
    *(b'{"a":1' + b"0" * 400 + b"}", b'{"a":1' + b"0" * 1000 + b"e-900}", b'{"a":0.5e308}', b'{"a":1e99999999999999}'),
    # strings: escapes
    *(b'{"a":"\\"\\\\\\/\\b\\f\\n\\r\\t"}', b'{"a":"\\x"}', b'{"a":"\\a"}', b'{"a":"\\u00"}', b'{"a":"\\u12G4"}'),
    *(b'{"a":"\\U00e9"}', b'{"a":"\\u0000"}', b'{"a":"\\uD83D\\uDE00"}', b'{"a":"\\ud800"}', b'{"a":"\\udc00"}'),
    *(b'{"a":"\\ud800\\udc00"}', b'{"a":"\\udbff\\udfff"}', b'{"a":"\\ud800x"}', b'{"a":"\\ud800\\ud800"}'),
    *(b'{"a":"\\udc00\\ud800"}', b'{"a":"\\ud800\\u0041"}', b'{"a":"\\ud800\\n"}', b'{"a":"\\ud800\\"}'),
    *(b'{"\\ud800":1}', b'{"a":"\\', b'{"a":"\\u', b'{"a":"\\ud800\\u'),
    # strings: raw bytes
    *(b'{"a":"\x00"}', b'{"a":"\x01"}', b'{"a":"\x1f"}', b'{"a":"\x7f"}', b'{"a\x00":1}', b'{"a":"\t"}', b'{"a":"\n"}'),
    *(b'{"a":"\xff"}', b'{"a":"\x80"}', b'{"a":"\xc0\x80"}', b'{"a":"\xc1\xbf"}', b'{"a":"\xc2\x80"}', b'{"a":"\xc2"}'),
    *(b'{"a":"\xe0\x80\x80"}', b'{"a":"\xe0\xa0\x80"}', b'{"a":"\xed\x9f\xbf"}', b'{"a":"\xed\xa0\x80"}'),
    *(b'{"a":"\xed\xbf\xbf"}', b'{"a":"\xee\x80\x80"}', b'{"a":"\xef\xbf\xbf"}', b'{"a":"\xef\xbb\xbf"}'),
    *(b'{"a":"\xf0\x80\x80\x80"}', b'{"a":"\xf0\x90\x80\x80"}', b'{"a":"\xf4\x8f\xbf\xbf"}'),
    *(b'{"a":"\xf4\x90\x80\x80"}', b'{"a":"\xf7\xbf\xbf\xbf"}', b'{"a":"\xf8\x88\x80\x80\x80"}'),
    *(b'{"a":"\xf5\x80\x80\x80"}', b'{"a":"\xf0\x9f\x98"}', b'{"a":"\xe2\x82"}', b'{"\xc3\xa9":"\xc3\xa9"}'),
    *(b'{"a":1}\xff', b'{"a":"x"\xc3\xa9}', b'{"a":"unterminated}'),
]


@needs_c
@pytest.mark.parametrize("data", EDGES)
def test_edge_cases_agree_with_orjson(data: bytes) -> None:
    assert is_json_object(data) == orjson_object(data)


# Valid objects the check leaves to orjson on purpose (False, and orjson says yes).
LEFT_TO_ORJSON = [
    b'{"a":1.7976931348623157e308}',  # DBL_MAX: finite, but at 1e308 or more
    b'{"a":0.001e309}',  # 1e306, but the exponent alone is past 308
    b'{"a":1' + b"0" * 308 + b"}",
    b'{"a":0e999}',  # zero, but with an exponent past 308
    b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1),
    b'{"a":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}",
]


@needs_c
@pytest.mark.parametrize("data", LEFT_TO_ORJSON)
def test_rare_valid_shapes_are_left_to_orjson(data: bytes) -> None:
    assert orjson_object(data)
    assert not is_json_object(data)


def may_reach_1e308(number: str) -> bool:
    """The check's rule: a number whose integer digits plus exponent exceed 308 goes to orjson."""
    mantissa, _, exponent = number.lstrip("-").lower().partition("e")
    integer = mantissa.partition(".")[0]
    digits = 0 if integer == "0" else len(integer)
    return digits + int(exponent or 0) > 308


@needs_c
@fuzz(1500)
@given(
    st.from_regex(r"-?[0-9]{0,3}(\.[0-9]{0,3})?([eE][+-]?[0-9]{0,4})?", fullmatch=True)
    | st.builds("{}e{}".format, st.integers(-(10**311), 10**311), st.integers(-9, 9))
)
def test_numbers_agree_with_orjson_except_near_the_double_range(number: str) -> None:
    data = b'{"n":' + number.encode() + b"}"
    answer, truth = sound(data), orjson_object(data)
    if answer != truth:
        assert may_reach_1e308(number), number
    if truth and not may_reach_1e308(number):
        assert answer, number


def in_string(sequence: bytes) -> bytes:
    return b'{"a":"' + sequence + b'"}'


@needs_c
def test_every_two_byte_sequence_in_a_string_agrees_with_orjson() -> None:
    for first, second in itertools.product(range(256), repeat=2):
        data = in_string(bytes([first, second]))
        assert is_json_object(data) == orjson_object(data), data


@needs_c
def test_three_and_four_byte_sequences_agree_with_orjson() -> None:
    # Every lead and second byte; for the rest, the edges of the continuation range.
    tails = [b"\x7f", b"\x80", b"\xbf", b"\xc0"]
    for lead, second in itertools.product(range(0xC0, 0x100), range(256)):
        for tail in (*tails, *(a + b for a, b in itertools.product(tails, repeat=2))):
            data = in_string(bytes([lead, second]) + tail)
            assert is_json_object(data) == orjson_object(data), data


@needs_c
@pytest.mark.parametrize(
    "special", [b'"', b"\\", b"\\n", b"\x00", b"\x1f", b" ", b"\x7f", b"\x80", b"\xc3\xa9", b"\xc3", b"\xff", b"~"]
)
def test_a_special_byte_anywhere_in_long_text_agrees_with_orjson(special: bytes) -> None:
    # Long plain text is skipped eight bytes at a time: every offset of the
    # special byte within and across those words, and every length around them.
    for before, after in itertools.product(range(26), range(0, 26, 5)):
        data = in_string(b"x" * before + special + b"y" * after)
        assert is_json_object(data) == orjson_object(data), data


@needs_c
def test_the_first_of_two_special_bytes_in_a_word_decides() -> None:
    # The scan jumps to the first byte of a word that is not plain; a later
    # one in the same word (or a borrow it causes) must not be taken first:
    # a quote before a control byte ends the string, an escape before a quote
    # escapes it, and so on.
    specials = [b'"', b"\\", b"\x01", b"\x1f", b"\x80", b"\xc3\xa9", b"\n"]
    for first, second in itertools.product(specials, repeat=2):
        for before, between in itertools.product(range(9), range(8)):
            data = in_string(b"x" * before + first + b"y" * between + second + b"z" * 3)
            assert is_json_object(data) == orjson_object(data), data


@needs_c
def test_unicode_escapes_and_surrogate_pairs_agree_with_orjson() -> None:
    units = ["0000", "0041", "00e9", "D7FF", "d800", "DBFF", "DC00", "dfff", "E000", "FFFF"]
    follows = ["", "x", "\\n", "\\", "\\u", "\\u00", *(f"\\u{unit}" for unit in units)]
    for unit, follow in itertools.product(units, follows):
        data = in_string(f"\\u{unit}{follow}".encode())
        assert is_json_object(data) == orjson_object(data), data


@needs_c
@pytest.mark.parametrize("depth", [1, 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 1024, 1025, 100_000])
def test_deep_nesting_stops_at_the_limit_without_crashing(depth: int) -> None:
    objects = b'{"a":' * depth + b"1" + b"}" * depth
    arrays = b'{"a":' + b"[" * (depth - 1) + b"1" + b"]" * (depth - 1) + b"}"
    for data in (objects, arrays):
        assert sound(data) == (depth <= MAX_DEPTH)
        assert not sound(data[:-1])
        assert not sound(data[: len(data) // 2])


@needs_c
@pytest.mark.parametrize("data", ["{}", bytearray(b"{}"), memoryview(b"{}"), None, 1])
def test_only_bytes_are_accepted(data: object) -> None:
    with pytest.raises(TypeError, match="must be bytes"):
        is_json_object(data)  # type: ignore[arg-type]


def test_without_the_extension_nothing_is_taken() -> None:
    assert json_check._not_sure(b"{}") is False


# --------------------------------------------------------------------------- the formatter


def orjson_only() -> Any:
    """The formatter as it was before the C check: orjson checks every record."""
    return mock.patch.object(formatting, "is_json_object", json_check._not_sure)


def entry(record: bytes) -> dict[bytes, bytes]:
    return {b"v": b"1", b"record": record, b"client": b"10.0.0.1:5", b"catcher": b"c1", b"received": b"1700000000.5"}


def format_both(record: bytes) -> tuple[bytes | str, bytes | str]:
    """The line (or the EntryError's message) with the check, and with orjson only."""
    answers: list[bytes | str] = []
    for patch in (False, True):
        formatter = JsonLineFormatter()
        try:
            if patch:
                with orjson_only():
                    answers.append(formatter.format(b"1700000000000-7", entry(record)))
            else:
                answers.append(formatter.format(b"1700000000000-7", entry(record)))
        except EntryError as exc:
            answers.append(f"EntryError: {exc}")
    return answers[0], answers[1]


def test_json_lines_are_unchanged_for_the_benchmark_mix() -> None:
    for record in BENCH_RECORDS[:500]:
        with_check, orjson_alone = format_both(record)
        assert with_check == orjson_alone
        assert isinstance(with_check, bytes)
        line = orjson.loads(with_check)
        assert line["logrelay"]["entry_id"] == "1700000000000-7"


@pytest.mark.parametrize(
    "record",
    [
        *(b'{"a":1,}', b'{"a":"\\ud800"}', b'{"a":"\xff"}', b'{"a":NaN}', b'{"a":1e400}', b"{} {}", b"{not json}"),
        *(b'{"a":1}\n', b'  {"a":[1,2]}  ', b"{}", b" {} ", b'{"a":1.7976931348623157e308}', b"[1]", b"{]"),
        *LEFT_TO_ORJSON,
    ],
)
def test_json_lines_and_errors_are_unchanged_at_the_edges(record: bytes) -> None:
    with_check, orjson_alone = format_both(record)
    assert with_check == orjson_alone
    if not json_object(record):
        assert isinstance(with_check, str)
        assert with_check.startswith("EntryError: record is not")
    else:
        assert isinstance(with_check, bytes)


def json_object(data: bytes) -> bool:
    """Whether ``data`` is one JSON object as the consumer reads it: orjson, or strict JSON for what orjson refuses."""
    if orjson_object(data):
        return True
    try:
        return isinstance(json.loads(data.decode("utf-8"), parse_constant=_no_constant), dict)
    except ValueError:
        return False


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


@fuzz(300)
@given(st.one_of(mutated_records(), st.sampled_from(BENCH_RECORDS[:50])))
def test_json_lines_and_errors_are_unchanged_for_mutated_records(record: bytes) -> None:
    with_check, orjson_alone = format_both(record)
    assert with_check == orjson_alone


def test_floats_at_the_top_of_the_range_are_left_to_orjson() -> None:
    # math.nextafter(1e308, 0) is written as 9.999999999999999e307: below 1e308, taken.
    assert is_json_object(orjson.dumps({"a": math.nextafter(1e308, 0)})) == (json_check.IMPLEMENTATION == "c")
    assert not is_json_object(orjson.dumps({"a": 1e308}))
