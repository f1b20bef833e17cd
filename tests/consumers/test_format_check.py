"""A --format is checked before the first record: refused when nothing could render, warned about when mistyped."""

from __future__ import annotations

import logging
import logging.handlers

import orjson
import pytest

from consumers.format_check import KNOWN_FIELDS, MAX_FORMAT_LENGTH, FormatError, check_format, render_sample
from consumers.formatting import DEFAULT_FORMAT, LineFormatter, build_formatter
from relay.decode.frames import FrameDecoder, Record
from relay.decode.syslog_message import syslog_record
from tests.support.entries import entry_for, make_record


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("%(asctime)s %(levelname)", "missing conversion character after %(levelname): write e.g. %(levelname)s"),
        ("%(levelname) %(message)s", "missing conversion character after %(levelname)"),
        ("%(levelname)-8", "missing conversion character after %(levelname)"),
        ("%(message)s %(x", "'%(x' has no closing parenthesis"),
        (
            "%(message)d",
            "%(message)d cannot render message, a str (%d format: a real number is required, not str): "
            "write %(message)s",
        ),
        ("%(msecs)x %(message)s", "%(msecs)x cannot render msecs, a float"),
        ("%(message)c", "%(message)c cannot render message, a str"),
        ("%(exc_text)d %(message)s", "%(exc_text)d cannot render exc_text, None on most records"),
        ("%(asctime)q %(message)s", "%(asctime)q: 'q' is not a conversion character"),
        ("%(message)*s", "'*' takes a width or precision from an argument"),
        ("%(message)s %s", "'%s' at position 12: fields are named, e.g. %(message)s; write %% for a literal '%'"),
        ("%(message)s 100%", "a lone '%' at the end"),
        ("%()s %(message)s", "%() names no attribute"),
        ("just text", "'just text' names no record attribute"),
        ("%(message)s" * 100, f"longer than {MAX_FORMAT_LENGTH} characters (1100)"),
    ],
)
def test_a_format_that_cannot_render_is_refused_naming_the_field_and_the_fix(fmt: str, message: str) -> None:
    with pytest.raises(FormatError) as refused:
        check_format(fmt)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "fmt",
    [
        DEFAULT_FORMAT,
        "json",
        "%(levelname)-8s %(levelno)03d %(created)d %(msecs)03.0f %(process)x %(message).200s",
        "100%% %(message)s %%(literal)s",
        "%(taskName)s %(syslog)s %(args_text)s %(exc_info_text)s %(created_text)s %(entry_id)s %(message)s",
    ],
)
def test_formats_that_render_pass_without_warnings(fmt: str) -> None:
    assert check_format(fmt) == []


def test_a_mistyped_field_is_a_warning_naming_the_nearest_known_one() -> None:
    (warning,) = check_format("%(asctime)s %(levelnam)-8s %(message)s %(levelnam)-8s", placeholder="?")
    assert warning == (
        "--format field %(levelnam)-8s is not a LogRecord attribute or relay field; "
        "did you mean %(levelname)-8s? it will render as '?' on records without it"
    )
    (extra,) = check_format("%(request_id)s %(message)s")
    assert "%(request_id)s is not a LogRecord attribute or relay field; an extra= attribute of some records?" in extra


def test_records_of_every_input_carry_only_fields_the_check_knows() -> None:
    socket_record = make_record()
    frame = logging.handlers.SocketHandler("unused", 0).makePickle(socket_record)
    (decoded,) = FrameDecoder().feed(frame)
    assert isinstance(decoded, Record)
    syslog = syslog_record(b'<13>1 2026-12-07T04:50:00Z host app 17 ID1 [a b="c"] hello', 1764062593.0)
    assert isinstance(syslog, bytes)
    for record in (decoded, syslog):
        assert set(orjson.loads(record)) <= KNOWN_FIELDS


def test_the_sample_renders_as_a_real_record_would() -> None:
    formatter = LineFormatter("%(levelname)s %(name)s [%(client)s] %(message)s")
    real = formatter.format(b"1-0", entry_for(make_record("request %s failed", ("r-17",)), b"10.1.2.3:40000"))
    assert render_sample(formatter) == real
    assert orjson.loads(render_sample(build_formatter("json")))["logrelay"]["catcher"] == "catcher-1"


def test_a_formatter_that_fails_on_the_sample_is_refused_before_any_record() -> None:
    # LineFormatter's own check tries 0 for every field, which %x takes; a record's msecs, a float, it refuses.
    formatter = LineFormatter("%(msecs)x %(message)s")
    expected = r"cannot render a typical record: %\(msecs\)x: TypeError: %x format: an integer"
    with pytest.raises(FormatError, match=expected):
        render_sample(formatter)
