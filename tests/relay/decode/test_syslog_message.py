"""syslog_record: RFC 5424 and RFC 3164 messages to records, and what is refused."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import orjson
import pytest

from relay.decode.frames import BadFrame
from relay.decode.syslog_message import _FAST_5424, _parse, syslog_record

RECEIVED = 1_796_607_005.25  # 2026-12-07T01:30:05.25Z


def record(message: bytes, received: float = RECEIVED) -> dict[str, Any]:
    event = syslog_record(message, received)
    assert not isinstance(event, BadFrame), event
    parsed: dict[str, Any] = orjson.loads(event)
    return parsed


def refused(message: bytes) -> str:
    event = syslog_record(message, RECEIVED)
    assert isinstance(event, BadFrame)
    assert event.raw == message  # the dead letter keeps the message exactly
    return event.reason


def test_rfc5424_with_every_field() -> None:
    got = record(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 8710 ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"] '
        b"\xef\xbb\xbfAn application event log entry..."
    )
    assert got == {
        "name": "evntslog",
        "msg": "An application event log entry...",
        "args": None,
        "levelname": "INFO",
        "levelno": 20,
        "created": pytest.approx(dt.datetime(2003, 10, 11, 22, 14, 15, 3000, dt.UTC).timestamp(), abs=1e-6),
        "msecs": pytest.approx(3.0, abs=1e-3),
        "process": 8710,
        "syslog": {
            "rfc": 5424,
            "facility": 20,
            "severity": 5,
            "hostname": "mymachine.example.com",
            "appname": "evntslog",
            "procid": "8710",
            "msgid": "ID47",
            "structured_data": {
                "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
                "examplePriority@32473": {"class": "high"},
            },
        },
    }


def test_rfc5424_nil_values_take_the_receive_time_and_the_default_name() -> None:
    got = record(b"<14>1 - - - - - -")
    assert got["name"] == "syslog"
    assert got["msg"] == ""
    assert got["created"] == RECEIVED
    assert got["syslog"] == {
        "rfc": 5424,
        "facility": 1,
        "severity": 6,
        "hostname": None,
        "appname": None,
        "procid": None,
        "msgid": None,
    }
    assert "process" not in got


def test_rfc5424_offset_timestamp_and_microseconds() -> None:
    got = record(b"<13>1 2003-08-24T05:14:15.000003-07:00 host app - - - text")
    expected = dt.datetime(2003, 8, 24, 12, 14, 15, 3, dt.UTC).timestamp()
    assert got["created"] == pytest.approx(expected, abs=1e-7)
    assert got["msg"] == "text"


def test_the_same_second_parsed_twice_gives_the_same_time() -> None:
    # The parser remembers whole seconds: the fraction must still be each message's own.
    first = record(b"<13>1 2026-01-01T00:00:00.1Z h a - - - x")
    second = record(b"<13>1 2026-01-01T00:00:00.9Z h a - - - x")
    assert second["created"] - first["created"] == pytest.approx(0.8, abs=1e-6)


def test_structured_data_escapes() -> None:
    got = record(b'<13>1 - h a - - [id@1 q="a \\"quoted\\" \\\\ \\] \\n"] m')
    assert got["syslog"]["structured_data"] == {"id@1": {"q": 'a "quoted" \\ ] \\n'}}
    assert got["msg"] == "m"


@pytest.mark.parametrize(
    ("severity", "levelname", "levelno"),
    [
        (0, "CRITICAL", 50),
        (1, "CRITICAL", 50),
        (2, "CRITICAL", 50),
        (3, "ERROR", 40),
        (4, "WARNING", 30),
        (5, "INFO", 20),
        (6, "INFO", 20),
        (7, "DEBUG", 10),
    ],
)
def test_severity_maps_to_the_logging_level(severity: int, levelname: str, levelno: int) -> None:
    pri = 8 * 23 + severity  # local7
    for message in (b"<%d>1 - - - - - - m" % pri, b"<%d>m" % pri):
        got = record(message)
        assert (got["levelname"], got["levelno"]) == (levelname, levelno)
        assert (got["syslog"]["facility"], got["syslog"]["severity"]) == (23, severity)


def test_rfc3164_as_logger_sends_it() -> None:
    got = record(b"<131>Dec  7 01:27:35 vm myapp[123]: hello 3164")
    local = time.localtime(got["created"])
    assert (local.tm_year, local.tm_mon, local.tm_mday, local.tm_hour, local.tm_min, local.tm_sec) == (
        time.localtime(RECEIVED).tm_year,
        12,
        7,
        1,
        27,
        35,
    )
    assert got["name"] == "myapp"
    assert got["msg"] == "hello 3164"
    assert got["process"] == 123
    assert got["levelname"] == "ERROR"
    assert got["syslog"] == {
        "rfc": 3164,
        "facility": 16,
        "severity": 3,
        "hostname": "vm",
        "appname": "myapp",
        "procid": "123",
    }


def test_rfc3164_a_timestamp_from_late_december_received_in_january_is_last_year() -> None:
    received = time.mktime((2027, 1, 1, 0, 0, 5, 0, 0, -1))
    got = record(b"<13>Dec 31 23:59:58 host app: m", received)
    assert time.localtime(got["created"])[:6] == (2026, 12, 31, 23, 59, 58)


def test_rfc3164_without_hostname_when_the_tag_follows_the_timestamp() -> None:
    got = record(b"<13>Dec  7 01:27:35 cron: job done")
    assert got["name"] == "cron"
    assert got["syslog"]["hostname"] is None
    assert got["msg"] == "job done"


def test_what_stdlib_sysloghandler_sends() -> None:
    # SysLogHandler: "<PRI>" + ident + the formatted record + NUL; no timestamp, no hostname.
    with_ident = record(b"<12>myservice: disk almost full\x00")
    assert (with_ident["name"], with_ident["msg"], with_ident["levelname"]) == (
        "myservice",
        "disk almost full",
        "WARNING",
    )
    assert with_ident["created"] == RECEIVED
    spaced = record(b"<11>something broke: badly\x00")
    assert (spaced["name"], spaced["msg"]) == ("syslog", "something broke: badly")  # a tag has no space
    bare = record(b"<11>no tag here at all\x00")
    assert (bare["name"], bare["msg"]) == ("syslog", "no tag here at all")


def test_a_message_without_pri_is_user_notice() -> None:
    got = record(b"just text")
    assert (got["syslog"]["facility"], got["syslog"]["severity"], got["msg"]) == (1, 5, "just text")
    assert record(b"<abc>text")["msg"] == "<abc>text"


def test_bytes_that_are_not_utf8_stay_visible() -> None:
    assert record(b"<13>app: caf\xe9 \xff")["msg"] == "caf\\xe9 \\xff"


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (b"<192>text", "PRI 192 is beyond 191"),
        (b"<13>1 2003-13-11T22:14:15Z h a - - - m", "timestamp"),
        (b"<13>1 yesterday h a - - - m", "not RFC 3339"),
        (b"<13>1 2024\xff-01-01T00:00:00Z h a - - - m", "RFC 5424 header"),
        (b"<13>1 - h a - - [broken m", "STRUCTURED-DATA"),
        (b'<13>1 - h a - - [id p="unterminated] m', "closing quote"),
        (b"<13>1 - h a - - free text", "no STRUCTURED-DATA"),
        (b"<13>1 - h " + b"a" * 49 + b" - - - m", "field missing or too long"),
        (b'<13>1 - h a - - [id p="v"]m', "not followed by a space"),
    ],
)
def test_a_malformed_rfc5424_message_is_refused_with_its_reason(message: bytes, why: str) -> None:
    reason = refused(message)
    assert reason.startswith("not a syslog message: ")
    assert why in reason


def test_a_long_structured_data_value_of_escapes() -> None:
    value = b'\\]\\"' * 100_000
    got = record(b'<13>1 - h a - - [id p="' + value + b'" q="2"] m')
    assert got["syslog"]["structured_data"]["id"] == {"p": ']"' * 100_000, "q": "2"}


@pytest.mark.parametrize(
    "message",
    [
        b"<13>1 2026-12-07T01:27:35\xff - - - - - a timestamp with a byte beyond ASCII",
        b"<13>1 \xc3\xa9 h a - - - a timestamp of UTF-8",
        b"<13>app[\xff]: a PID with a byte beyond ASCII",
        b"<13>Dec  7 01:27:35 host app[caf\xc3\xa9]: a PID of UTF-8",
    ],
)
def test_bytes_beyond_ascii_in_a_header_field_never_raise(message: bytes) -> None:
    # They raised UnicodeDecodeError: the TCP connection was cut with the messages
    # decoded beside it in the same read, a UDP burst lost the records read before it.
    event = syslog_record(message, RECEIVED)
    if isinstance(event, BadFrame):
        assert event.raw == message
    else:
        assert orjson.loads(event)["msg"]


@pytest.mark.parametrize(
    "text",
    ["http://example.com/health is down", "12:30 backup done", "user:alice logged in", "INFO:root:cache warm"],
)
def test_a_colon_without_a_space_after_it_is_no_tag(text: str) -> None:
    # docs/inputs.md: a TAG is the word before the first ": ".  "http://x" lost "http:" from its
    # message and became a record of logger "http"; SysLogHandler sends such messages bare.
    got = record(b"<14>" + text.encode() + b"\x00")
    assert (got["name"], got["msg"], got["syslog"]["appname"]) == ("syslog", text, None)


def test_a_tag_with_a_pid_or_ending_the_message_is_a_tag() -> None:
    assert (record(b"<14>app[12]:no space")["name"], record(b"<14>app[12]:no space")["msg"]) == ("app", "no space")
    assert (record(b"<14>app:")["name"], record(b"<14>app:")["msg"]) == ("app", "")
    assert record(b"<13>Dec  7 01:27:35 host app: hello")["msg"] == "hello"


def test_the_reason_of_a_refused_message_stays_short_whatever_its_field() -> None:
    # The whole timestamp field went into the reason (and the log line): a 1 MiB field, a 1 MiB line.
    reason = refused(b"<13>1 " + b"9" * 100_000 + b" h a - - - m")
    assert len(reason) < 1024
    assert "not RFC 3339" in reason


@pytest.mark.parametrize(
    "message",
    [
        b"<134>1 2026-12-07T01:30:05.123456Z bench-host benchapp 1003 - - s3 q00000042 xxxx",
        b"<0>1 2026-12-07T01:30:05Z h a - - -",
        b"<191>1 2003-08-24T05:14:15.3-07:00 h a 12 ID - \xef\xbb\xbfwith a BOM",
        b"<13>1 - - - - - -",
        b'<165>1 2003-10-11T22:14:15.003Z m.example.com evntslog 8710 ID47 [id@1 a="1" b="\\"x\\""] An entry',
        b"<13>1 2003-10-11T22:14:15+05:30 h a p m - caf\xe9",
    ],
)
def test_the_one_match_path_gives_the_record_of_the_step_by_step_parse(message: bytes) -> None:
    # syslog_record takes the usual RFC 5424 message in one regex match (_FAST_5424); the
    # step-by-step parse it stands for must give the very same bytes.
    assert _FAST_5424.match(message) is not None
    assert syslog_record(message, RECEIVED) == orjson.dumps(_parse(message, RECEIVED))


@pytest.mark.parametrize(
    "message",
    [
        b"<192>1 - h a - - - m",  # the PRI refused
        b"<013>1 - h a - - - m",  # a leading zero: no PRI, the whole is a 3164 message
        b"<13>1 2003-13-11T22:14:15Z h a - - - m",  # a date that is no date
        b"<13>1 2003-10-11 h a - - - m",  # not RFC 3339
    ],
)
def test_what_the_one_match_path_leaves_is_parsed_step_by_step(message: bytes) -> None:
    expected = syslog_record(message, RECEIVED)
    try:
        steps = orjson.dumps(_parse(message, RECEIVED))
    except ValueError:
        assert isinstance(expected, BadFrame)
    else:
        assert expected == steps
