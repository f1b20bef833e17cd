"""HTTP requests to records, sans-I/O: HTTPHandler's forms field by field, args, JSON, NDJSON, limits, basic auth."""

from __future__ import annotations

import base64
import json
import logging
import sys
import urllib.parse
from typing import Any

import pytest

from relay.decode.frames import BadFrame, DecodeLimits
from relay.decode.http_records import (
    MAX_RECORDS_PER_REQUEST,
    BasicAuth,
    HttpRequest,
    RequestRefused,
    decode_request,
    media_type,
)
from relay.decode.log_args import MAX_ARGS_CHARS, MAX_NODES, parse_args_literal, render_message

LIMITS = DecodeLimits()
RECEIVED = 1_700_000_000.25
FORM = [(b"content-type", b"application/x-www-form-urlencoded")]


def record_form(msg: str, args: Any, **extra: Any) -> dict[str, Any]:
    """What HTTPHandler.mapLogRecord hands urlencode: a real LogRecord's __dict__."""
    record = logging.LogRecord("app.db", logging.WARNING, "/srv/app/db.py", 42, msg, args, None, func="query")
    record.__dict__.update(extra)
    return record.__dict__


def post(fields: dict[str, Any] | bytes, content_type: bytes = FORM[0][1], limits: DecodeLimits = LIMITS) -> list[Any]:
    body = fields if isinstance(fields, bytes) else urllib.parse.urlencode(fields).encode()
    events = decode_request(
        HttpRequest(b"POST", b"/any/path", [(b"content-type", content_type)], body), limits, RECEIVED
    )
    return [json.loads(event) if isinstance(event, bytes) else event for event in events]


def one(fields: dict[str, Any]) -> dict[str, Any]:
    [record] = post(fields)
    assert isinstance(record, dict), record
    return record


# -- HTTPHandler's fields ------------------------------------------------------------


def test_every_field_of_a_stdlib_record_comes_back_with_its_type() -> None:
    fields = record_form("%s rows in %.1f s", (12, 0.25))
    record = one(fields)
    assert record["msg"] == "12 rows in 0.2 s"  # %.1f of 0.25 rounds half to even, as on the sender
    assert record["args"] is None
    for name in ("levelno", "lineno", "thread", "process"):
        assert (type(record[name]), record[name]) == (int, fields[name]), name
    for name in ("created", "msecs", "relativeCreated"):
        assert (type(record[name]), record[name]) == (float, fields[name]), name
    for name in ("name", "levelname", "pathname", "filename", "module", "funcName", "threadName", "processName"):
        assert record[name] == fields[name], name
    assert record["exc_info"] is None
    assert record["exc_text"] is None
    assert record["stack_info"] is None
    assert "args_text" not in record
    assert "exc_info_text" not in record
    # The order sent is kept.
    assert list(record)[:3] == ["name", "msg", "args"]


def test_a_get_query_string_on_any_path_is_the_same_record() -> None:
    fields = record_form("hello %s", ("you",))
    query = urllib.parse.urlencode(fields).encode()
    [raw] = decode_request(HttpRequest(b"GET", b"/deep/path?" + query, []), LIMITS, RECEIVED)
    assert json.loads(raw) == one(fields)


def test_none_becomes_null_only_for_the_attributes_that_may_be_none() -> None:
    fields = record_form("m", None, threadName=None, processName=None, process=None, thread=None, taskName=None)
    fields.update(funcName=None, comment="None")
    record = one(fields)
    for name in ("threadName", "processName", "process", "thread", "taskName", "funcName", "args", "exc_text"):
        assert record[name] is None, name
    assert record["comment"] == "None"  # an extra's text stays text
    assert record["msg"] == "m"


def test_only_the_known_numeric_attributes_are_converted() -> None:
    record = one(record_form("m", (), order_id=12345, ratio=0.5, lineno_text="7"))
    assert record["order_id"] == "12345"
    assert record["ratio"] == "0.5"
    assert record["lineno_text"] == "7"


def test_numbers_that_do_not_read_as_numbers_stay_text() -> None:
    fields = record_form("m", ())
    fields.update(lineno="forty", levelno="1e3", msecs="nan", relativeCreated="inf", thread="٣")
    record = one(fields)
    assert record["lineno"] == "forty"
    assert record["levelno"] == "1e3"
    assert record["thread"] == "٣"
    assert record["msecs"] == "nan"
    assert record["relativeCreated"] == "inf"


def test_a_created_that_is_no_number_is_the_receive_time_and_kept_as_text() -> None:
    fields = record_form("m", ())
    fields["created"] = "yesterday"
    record = one(fields)
    assert record["created"] == RECEIVED
    assert record["created_text"] == "yesterday"


def test_exc_info_arrives_as_a_repr_kept_as_text_and_exc_text_is_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = one(record_form("failed", (), exc_info=exc_info, exc_text="Traceback ...\nValueError: boom"))
    assert record["exc_info"] is None
    assert record["exc_info_text"].startswith("(<class 'ValueError'>, ValueError('boom'), <traceback object")
    assert record["exc_text"] == "Traceback ...\nValueError: boom"


def test_text_beyond_ascii_and_a_2_7_sender_s_bytes_that_are_not_utf8() -> None:
    assert one(record_form("café %s", ("naïve ✓",)))["msg"] == "café naïve ✓"
    record = post(b"msg=caf%E9&levelno=20")[0]
    assert record["msg"] == "caf\ufffd"
    assert record["levelno"] == 20


def test_an_extra_of_the_name_the_relay_would_use_is_not_overwritten() -> None:
    record = one(record_form("%s", (object(),), args_text="the sender's own"))
    assert record["args_text"] == "the sender's own"
    assert record["msg"] == "%s"


# -- args -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "args", "expected"),
    [
        ("%s and %r", ("a", "b"), "a and 'b'"),
        ("%d%% of %05.1f", (50, 3.14159), "50% of 003.1"),
        ("%(user)s logged in %(n)d times", {"user": "bob", "n": 3}, "bob logged in 3 times"),
        ("nested %s", ([1, (2, {"k": None})],), "nested [1, (2, {'k': None})]"),
        ("all %s %s %s %s %s", (True, None, b"\x00b", -1.5e-05, 1 + 2j), "all True None b'\\x00b' -1.5e-05 (1+2j)"),
        ("100% sure", (), "100% sure"),  # no args: not formatted, as getMessage does
        ("a set %s", ({3},), "a set {3}"),
    ],
)
def test_a_literal_args_renders_the_message_as_the_sender_would(msg: str, args: Any, expected: str) -> None:
    record = one(record_form(msg, args))
    assert record["msg"] == expected == logging.LogRecord("n", 20, "p", 1, msg, args, None).getMessage()
    assert record["args"] is None
    assert "args_text" not in record


@pytest.mark.parametrize(
    ("msg", "args"),
    [
        ("at %s", (object(),)),  # a repr no parser reads back
        ("%d items", ("many",)),  # the format does not fit
        ("%s %s", ("one",)),
        ("%(missing)s", ({"there": 1},)),  # a lone mapping: LogRecord keeps the mapping as args
        ("%c", (0x110000,)),
    ],
)
def test_args_that_do_not_render_leave_msg_as_sent_and_the_args_text_beside_it(msg: str, args: Any) -> None:
    fields = record_form(msg, args)
    record = one(fields)
    assert record["msg"] == msg
    assert record["args"] is None
    assert record["args_text"] == str(fields["args"])


HOSTILE_ARGS = [
    "(__import__('os').system('touch /tmp/pwned'),)",
    "(open('/etc/passwd').read(),)",
    "[x for x in ().__class__.__bases__]",
    "(lambda: 1)",
    "(1 if True else 2,)",
    "(10**1000000,)",
    "('a' * 10**9,)",
    "(" * 2000 + ")" * 2000,
    "[" * 50 + "]" * 50,  # deeper than max_depth 32
    "-" * 100_000 + "1",
    "~" * 5000 + "1",
    "(" + "1," * (MAX_NODES + 10) + ")",
    "('" + "x" * MAX_ARGS_CHARS + "',)",
    "(" + "9" * 5000 + ",)",
    "(1,) + (2,)",
    "('unterminated,)",
    "a.b.c",
]


@pytest.mark.parametrize("args_text", HOSTILE_ARGS, ids=lambda text: text[:30])
def test_hostile_args_are_never_evaluated_and_cost_little(args_text: str) -> None:
    assert parse_args_literal(args_text, LIMITS.max_depth) == (False, None)
    record = post(urllib.parse.urlencode({"msg": "%s", "args": args_text, "levelno": "20"}).encode())[0]
    assert record["msg"] == "%s"
    assert record["args_text"] == args_text


def test_nesting_within_max_depth_is_a_literal_and_beyond_it_is_not() -> None:
    assert parse_args_literal("[" * 32 + "]" * 32, 32)[0]
    assert not parse_args_literal("[" * 33 + "]" * 33, 32)[0]
    # Brackets inside strings are text, not nesting.
    assert parse_args_literal("('" + "(" * 100 + "',)", 32) == (True, ("(" * 100,))


@pytest.mark.parametrize("msg", ["%999999999d", "%.99999s", "%*d", "%(a)*d", "%(a(b)c)99999d", "%-+ #0999999.1f"])
def test_huge_or_starred_widths_are_not_rendered(msg: str) -> None:
    args = "{'a': 1, 'a(b)c': 2}" if "(" in msg else "(5, 5)"
    assert render_message(msg, args, max_depth=32, max_bytes=10**9) is None


def test_a_mapping_value_repeated_past_the_byte_budget_is_not_rendered() -> None:
    args = repr({"a": "x" * 1000})
    assert render_message("%(a)s" * 3, args, max_depth=32, max_bytes=10**6) == "x" * 3000
    assert render_message("%(a)s" * 1000, args, max_depth=32, max_bytes=10**6) is None


# -- JSON -------------------------------------------------------------------------


def test_one_json_object_is_a_record_with_message_levels_and_time_filled_in() -> None:
    [record] = post(b'{"message": "disk full", "levelname": "warn", "host": "db1"}', b"application/json")
    assert record == {
        "msg": "disk full",
        "levelname": "WARNING",
        "levelno": 30,
        "host": "db1",
        "created": RECEIVED,
        "msecs": 250.0,
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"levelno": 40}, {"levelno": 40, "levelname": "ERROR"}),
        ({"levelno": 25}, {"levelno": 25, "levelname": "Level 25"}),
        ({"levelname": "fatal"}, {"levelname": "CRITICAL", "levelno": 50}),
        ({"levelname": "NOTICE"}, {"levelname": "NOTICE"}),  # no stdlib number for it
        ({"levelname": "INFO", "levelno": 25}, {"levelname": "INFO", "levelno": 25}),  # both given: as sent
        ({"msg": "m", "message": "other"}, {"msg": "m", "message": "other"}),
        ({"created": 1.5}, {"created": 1.5, "msecs": 500.0}),
        ({"created": 2, "msecs": 7}, {"created": 2.0, "msecs": 7}),
        ({"created": "1700000001.5"}, {"created": 1700000001.5, "msecs": 500.0}),
        ({"created": "2024-05-01T12:00:00+02:00"}, {"created": 1714557600.0, "msecs": 0.0}),
        ({"created": "2024-05-01T10:00:00"}, {"created": 1714557600.0, "msecs": 0.0}),  # naive: UTC
        ({"created": True}, {"created": RECEIVED, "created_text": True, "msecs": 250.0}),
    ],
)
def test_json_fields_filled_consistently(given: dict[str, Any], expected: dict[str, Any]) -> None:
    [record] = post(json.dumps(given).encode(), b"application/json")
    expected.setdefault("created", RECEIVED)
    expected.setdefault("msecs", 250.0)
    assert record == expected


def test_a_json_array_keeps_good_records_and_dead_letters_each_bad_element() -> None:
    events = post(b'[{"msg": "a"}, 42, {"msg": "b"}, ["x"], null]', b"application/json; charset=utf-8")
    assert [event["msg"] if isinstance(event, dict) else event.reason for event in events] == [
        "a",
        "a JSON number, not an object",
        "b",
        "a JSON array, not an object",
        "a JSON null, not an object",
    ]
    assert events[1].raw == b"42"
    assert events[3].raw == b'["x"]'


@pytest.mark.parametrize("content_type", [b"application/x-ndjson", b"application/jsonl", b"application/ndjson"])
def test_ndjson_with_a_bad_line_in_the_middle_loses_no_good_line(content_type: bytes) -> None:
    body = b'{"msg": "first"}\r\n\n{"msg": broken\n"a string"\n{"msg": "last"}\n'
    events = post(body, content_type)
    assert [event["msg"] for event in events if isinstance(event, dict)] == ["first", "last"]
    bad = [event for event in events if isinstance(event, BadFrame)]
    assert [event.raw for event in bad] == [b'{"msg": broken', b'"a string"']
    assert bad[0].reason.startswith("line is not JSON")
    assert bad[1].reason == "a JSON string, not an object"
    assert isinstance(events[0], dict)
    assert isinstance(events[-1], dict)


def test_json_that_is_not_json_is_one_dead_letter_with_the_body() -> None:
    [bad] = post(b'{"msg": ', b"application/json")
    assert isinstance(bad, BadFrame)
    assert bad.raw == b'{"msg": '
    assert bad.reason.startswith("not JSON")


def test_json_nesting_and_size_are_bounded_by_the_decode_limits() -> None:
    limits = DecodeLimits(max_depth=3, max_decoded_bytes=200)
    deep = b'{"a": {"b": {"c": 1}}}'
    deeper = b'{"a": {"b": {"c": {"d": 1}}}}'
    events = post(deep + b"\n" + deeper + b'\n{"msg": "' + b"x" * 300 + b'"}\n', b"application/x-ndjson", limits)
    assert events[0]["a"] == {"b": {"c": 1}}
    assert isinstance(events[1], BadFrame)
    assert "deeper than 3" in events[1].reason
    assert events[1].raw == deeper
    assert isinstance(events[2], BadFrame)
    assert "maximum decoded size" in events[2].reason
    # orjson's own nesting bound stops a hostile document before our walk.
    [bad] = post(b"[" * 5000 + b"]" * 5000, b"application/json")
    assert isinstance(bad, BadFrame)


# -- what is not a record ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "headers", "body", "status"),
    [
        (b"PUT", b"/", FORM, b"msg=x", 405),
        (b"DELETE", b"/", [], b"", 405),
        (b"GET", b"/favicon.ico", [], b"", 400),
        (b"POST", b"/", FORM, b"  ", 400),
        (b"POST", b"/", [(b"content-type", b"text/plain")], b"msg=x", 415),
        (b"POST", b"/", [], b'{"msg": "x"}', 415),
    ],
)
def test_requests_with_no_record_are_refused_with_a_status(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes, status: int
) -> None:
    with pytest.raises(RequestRefused) as refused:
        decode_request(HttpRequest(method, target, headers, body), LIMITS, RECEIVED)
    assert refused.value.status == status


def test_a_form_with_too_many_fields_is_a_dead_letter() -> None:
    body = "&".join(f"f{n}=1" for n in range(2000)).encode()
    [bad] = post(body)
    assert isinstance(bad, BadFrame)
    assert bad.raw == body
    assert "form not decodable" in bad.reason


def test_media_type_ignores_parameters_and_case() -> None:
    assert media_type(b"Application/JSON; charset=UTF-8") == "application/json"
    assert media_type(None) == ""


# -- basic auth --------------------------------------------------------------------------


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def test_basic_auth_accepts_each_configured_pair_and_nothing_else() -> None:
    auth = BasicAuth([("fleet", "s3cret"), ("ops", "pä:ss")])
    assert auth.required
    assert auth.check(basic("fleet", "s3cret")) == (True, "fleet")
    assert auth.check(basic("ops", "pä:ss")) == (True, "ops")  # a colon in the password is the password's
    assert auth.check(b"basic " + base64.b64encode(b"fleet:s3cret")) == (True, "fleet")
    assert auth.check(basic("fleet", "s3cret!")) == (False, "fleet")
    assert auth.check(basic("ops", "s3cret")) == (False, "ops")  # another user's password
    assert auth.check(None) == (False, "")
    assert auth.check(b"Bearer abc") == (False, "")
    assert auth.check(b"Basic !!!notbase64") == (False, "")
    assert auth.check(b"Basic " + base64.b64encode(b"fleets3cret")) == (False, "fleets3cret")


def test_no_credentials_configured_lets_every_request_through() -> None:
    auth = BasicAuth(())
    assert not auth.required
    assert auth.check(None) == (True, "")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[" + b",".join([b"1"] * (LIMITS.max_frame_bytes // 2 - 1)) + b"]", b"application/json"),
        (b"[" + b",".join([b"{}"] * (LIMITS.max_frame_bytes // 3 - 1)) + b"]", b"application/json"),
        (b"\n".join([b"{}"] * (LIMITS.max_frame_bytes // 3)), b"application/x-ndjson"),
    ],
)
def test_a_request_of_more_records_than_allowed_is_refused_before_any_is_decoded(
    body: bytes, content_type: bytes
) -> None:
    # One 1 MiB request was 524,288 dead letters (4.6 s of the event loop) or 349,525
    # records of 44 bytes each (15 MiB into the buffer at once) from 1 MiB.
    with pytest.raises(RequestRefused) as refused:
        post(body, content_type)
    assert refused.value.status == 413
    assert str(MAX_RECORDS_PER_REQUEST) in refused.value.reason


def test_a_request_of_as_many_records_as_allowed_is_taken() -> None:
    body = b"\n".join([b"{}"] * MAX_RECORDS_PER_REQUEST + [b"", b"  "])
    assert len(post(body, b"application/x-ndjson")) == MAX_RECORDS_PER_REQUEST
    array = b"[" + b",".join([b"{}"] * MAX_RECORDS_PER_REQUEST) + b"]"
    assert len(post(array, b"application/json")) == MAX_RECORDS_PER_REQUEST
