"""The C syslog parse (relay/decode/_syslog.c) against its Python reference: None, or the same bytes.

Every message of test_syslog_message.py and test_syslog_frames.py, edge cases of each field, and
generated mutations of the usual message; and the usual forms must be taken by the C (not None).
tests/fuzz/syslog.py runs the same comparison for as long as asked (scripts/fuzz-sanitized runs it under
AddressSanitizer and UBSan).
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.decode import syslog_message
from relay.decode.frames import BadFrame
from relay.decode.syslog_message import rfc5424_json, syslog_record, syslog_record_python

needs_c = pytest.mark.skipif(rfc5424_json is None, reason="the C syslog parse is not built here")

RECEIVED = 1_796_607_005.25
HERE = Path(__file__).parent


def bytes_in(path: Path) -> list[bytes]:
    """Every bytes literal of a test module (its messages and streams)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, bytes)]


FROM_TESTS = sorted(set(bytes_in(HERE / "test_syslog_message.py") + bytes_in(HERE / "test_syslog_frames.py")))
# Streams of the framing tests hold several messages: each line is a message too.
FROM_TESTS += sorted({line for stream in FROM_TESTS for line in stream.split(b"\n")} - set(FROM_TESTS))

USUAL = [
    b"<134>1 2026-12-07T01:30:05.123456Z bench-host benchapp 1001 - - s3 q00000042 xxxxxxxx\n",
    b"<134>1 2026-12-07T01:30:05.123456Z bench-host benchapp 1001 - - s3 q00000042 xxxxxxxx",
    b"<13>1 2026-12-07T01:30:05Z host app - - - plain",
    b"<13>1 2026-12-07T01:30:05.5+02:00 host app 12 ID1 - plain\x00",
    b"<13>1 2026-12-07T01:30:05.000001-07:30 host app 12 ID1 - plain\r\n",
    b"<13>1 - host app 12 ID1 - plain",
    b"<13>1 - - - - -",
    b"<13>1 - - - - - -",
    b"<13>1 - - - - - - ",
    b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 - "
    b"\xef\xbb\xbf\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
    b'<13>1 - h"q a\\b p"1 m\\ - quotes "and" back\\slashes \x01\x07\x08\t\n\x0b\x0c\r\x1b\x1f\x7f',
    b"<13>1 - host app - - - \x00middle\x00nul",
    b"<13>1 2024-02-29T23:59:59Z leap day - - - x",
    b"<13>1 2000-02-29T00:00:00Z leap400 a - - - x",
    b"<13>1 2023-12-31T23:59:59.999999Z h a - - - x",
    b"<13>1 1970-01-01T00:00:00Z epoch a - - - x",
    b"<13>1 1969-12-31T23:59:59.5Z before a - - - x",
    b"<13>1 0001-01-01T00:00:00Z first a - - - x",
    b"<13>1 0001-01-01T00:00:00+23:59 first a - - - x",
    b"<13>1 9999-12-31T23:59:59.999999-23:59 last a - - - x",
    b"<13>1 2026-06-15T12:00:00-00:00 negzero a - - - x",
    b"<13>1 - h a 0123456789 - - ten digits",
    b"<13>1 - h a 0 - - zero",
    b"<13>1 - " + b"h" * 255 + b" " + b"a" * 48 + b" " + b"p" * 128 + b" " + b"m" * 32 + b" - longest",
] + [b"<%d>1 - host app - - - pri" % pri for pri in (0, 1, 7, 8, 9, 10, 99, 100, 184, 190, 191)]

LEFT_TO_PYTHON = [
    b"<192>1 - host app - - - pri beyond",
    b"<999>1 - host app - - - pri beyond",
    b"<1000>1 - host app - - - pri",
    b"<01>1 - host app - - - leading zero",
    b"<>1 - host app - - - empty pri",
    b"<13>2 - host app - - - version 2",
    b"<13>1 2023-02-29T00:00:00Z h a - - - not a leap year",
    b"<13>1 1900-02-29T00:00:00Z h a - - - not a leap year",
    b"<13>1 2024-02-30T00:00:00Z h a - - - Feb 30",
    b"<13>1 2024-04-31T00:00:00Z h a - - - Apr 31",
    b"<13>1 2024-13-01T00:00:00Z h a - - - month 13",
    b"<13>1 2024-00-01T00:00:00Z h a - - - month 0",
    b"<13>1 2024-01-00T00:00:00Z h a - - - day 0",
    b"<13>1 0000-01-01T00:00:00Z h a - - - year 0",
    b"<13>1 2024-01-01T24:00:00Z h a - - - hour 24",
    b"<13>1 2024-01-01T23:60:00Z h a - - - minute 60",
    b"<13>1 2024-12-31T23:59:60Z h a - - - leap second",
    b"<13>1 2024-01-01T00:00:00+24:00 h a - - - offset 24",
    b"<13>1 2024-01-01T00:00:00+00:60 h a - - - offset minutes 60",
    b"<13>1 2024-01-01T00:00:00.1234567Z h a - - - seven digits",
    b"<13>1 2024-01-01T00:00:00.Z h a - - - no digits",
    b"<13>1 2024-01-01t00:00:00Z h a - - - lower t",
    b"<13>1 2024-01-01T00:00:00z h a - - - lower z",
    b"<13>1 2024-01-01T00:00:00 h a - - - no zone",
    b"<13>1 - " + b"h" * 256 + b" a - - - host 256",
    b"<13>1 - h " + b"a" * 49 + b" - - - app 49",
    b"<13>1 - h a " + b"p" * 129 + b" - - procid 129",
    b"<13>1 - h a p " + b"m" * 33 + b" - msgid 33",
    b'<13>1 - h a p m [id@1 k="v"] structured data',
    b"<13>1 - h a p m x no structured data",
    b"<13>1 - h a p m - \xff invalid utf-8",
    b"<13>1 - h a p m - \xc0\xaf overlong",
    b"<13>1 - h a p m - \xed\xa0\x80 surrogate",
    b"<13>1 - h a p m - \xf4\x90\x80\x80 beyond U+10FFFF",
    b"<13>1 - h a p m - truncated \xe2\x82",
    b"<13>1 - h\ta p m - tab in a field",
    b"<13>1 - h\xc3\xa9 a p m - non-ASCII host",
    b"<13>1 - h a p m\t- tab after msgid",
    b"<13>1  h a p m - two spaces",
    b"<13>1 - h a p",
    b"<13>1 - - - - ",
    b"<13>Oct 11 22:14:15 mymachine su: 'su root' failed",
    b"plain text",
    b"",
]

# A received time that orjson writes in exponent form, or that int() refuses: the reference's.
ODD_RECEIVED = [0.0, -0.0, 1e-05, 1e16, 1.5e300, -1_796_607_005.75, math.inf, -math.inf, math.nan]


def agrees(message: bytes, received: float = RECEIVED) -> bytes | None:
    """The C answer after checking it is None or the reference's bytes."""
    assert rfc5424_json is not None
    answer = rfc5424_json(message, received)
    if answer is not None:
        assert answer == syslog_record_python(message, received), message
    return answer


@needs_c
@pytest.mark.parametrize("message", FROM_TESTS + USUAL + LEFT_TO_PYTHON)
def test_the_c_answers_none_or_the_reference(message: bytes) -> None:
    agrees(message)
    agrees(message, 1_700_000_000.0)


@needs_c
@pytest.mark.parametrize("message", USUAL)
def test_the_usual_messages_take_the_c(message: bytes) -> None:
    answer = agrees(message)
    assert answer is not None
    assert syslog_record(message, RECEIVED) == answer


@needs_c
@pytest.mark.parametrize("message", LEFT_TO_PYTHON)
def test_what_the_c_leaves_to_python(message: bytes) -> None:
    assert agrees(message) is None


@needs_c
def test_refusals_stay_the_references() -> None:
    for message in (b"<192>1 - h a - - - x", b"<13>1 2024-02-30T00:00:00Z h a - - - x", b"<13>1 - h a p m [x"):
        assert isinstance(syslog_record(message, RECEIVED), BadFrame)


@needs_c
@pytest.mark.parametrize("received", ODD_RECEIVED)
def test_odd_received_times(received: float) -> None:
    agrees(b"<13>1 - host app - - - nil timestamp", received)
    agrees(b"<13>1 2024-01-01T00:00:00Z host app - - - timestamp", received)


@needs_c
def test_an_int_received_is_the_references() -> None:
    assert rfc5424_json is not None
    assert rfc5424_json(b"<13>1 - host app - - - x", 1_700_000_000) is None
    with pytest.raises(TypeError):
        rfc5424_json("<13>1 - host app - - - x", RECEIVED)  # type: ignore[arg-type]


@needs_c
def test_every_fraction_length_and_many_seconds() -> None:
    for digits in range(1, 7):
        for second in range(0, 60, 7):
            fraction = b"987654321"[:digits]
            message = b"<13>1 2026-12-07T01:30:%02d.%sZ h a 1 - - x" % (second, fraction)
            assert agrees(message) is not None


@needs_c
def test_every_month_end() -> None:
    for year in (1900, 1970, 1999, 2000, 2023, 2024, 2100, 9999):
        for month in range(1, 13):
            for day in (28, 29, 30, 31, 32):
                agrees(b"<13>1 %04d-%02d-%02dT23:59:59.5+05:45 h a - - - x" % (year, month, day))


def _mutate(base: bytes, edits: list[tuple[int, int, int, bytes]]) -> bytes:
    data = bytearray(base)
    for kind, at, value, inserted in edits:
        at %= len(data) + 1
        if kind == 0 and at < len(data):
            data[at] ^= value or 1
        elif kind == 1:
            data[at:at] = inserted
        else:
            del data[at : at + value % 8 + 1]
    return bytes(data)


EDIT = st.tuples(st.integers(0, 2), st.integers(0, 300), st.integers(0, 255), st.binary(min_size=1, max_size=4))


@needs_c
@settings(max_examples=400, deadline=None)
@given(st.sampled_from(USUAL), st.lists(EDIT, min_size=1, max_size=4))
def test_mutations_of_the_usual_messages(base: bytes, edits: list[tuple[int, int, int, bytes]]) -> None:
    agrees(_mutate(base, edits))


@needs_c
@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_as_msg(text: str) -> None:
    message = b"<14>1 2026-12-07T01:30:05.25Z h a 7 - - " + text.encode("utf-8", "surrogatepass")
    answer = agrees(message)
    if not any("\ud800" <= c <= "\udfff" for c in text):  # else not UTF-8: the reference's
        assert answer is not None
        assert orjson.loads(answer)["msg"] == text.rstrip("\n\r\x00")


def test_the_reference_is_what_runs_without_the_c(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syslog_message, "rfc5424_json", None)
    message = b"<13>1 - host app - - - x"
    assert syslog_record(message, RECEIVED) == syslog_record_python(message, RECEIVED)
