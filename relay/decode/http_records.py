"""HTTP requests to records, without sockets (sans-I/O): ``HTTPHandler`` forms and JSON.

:func:`decode_request` takes one complete request (:class:`HttpRequest`:
method, target, headers, body) and returns, in the order sent, a
:data:`~relay.decode.frames.Record` (the record as UTF-8 JSON object bytes,
as the SocketHandler path makes them) or a :class:`~relay.decode.frames.BadFrame`
(the bytes that did not make a record, and why) per record; a request with
nothing to record at all raises :class:`RequestRefused` with the status to answer.

Two kinds of senders:

* ``logging.handlers.HTTPHandler`` (2.7 and 3.x): ``urlencode(record.__dict__)``
  as a form (POST) or a query string (GET), on any path.  Every value arrived
  as ``str(value)``: the LogRecord attributes that are numbers become numbers
  again, ``'None'`` becomes null for the attributes that may be None, and the
  message is rendered from ``msg`` and ``args`` (:mod:`relay.decode.log_args`).
* JSON, for senders that are not Python: ``application/json`` (one object or
  an array of objects), ``application/x-ndjson`` / ``application/jsonl`` (an
  object per line).  Each object is a record; one that is not an object, or
  over the limits, is a bad frame and the others still go through.

docs/stream-format.md says what each field becomes.  :class:`BasicAuth`
checks ``HTTPHandler(credentials=...)``'s ``Authorization`` header.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson

from relay.decode.frames import BadFrame, DecodeLimits, Record, exact_size
from relay.decode.log_args import render_message
from relay.decode.to_json import DecodeLimitExceeded, to_json_value

__all__ = [
    "FORM_TYPE",
    "JSON_LINES_TYPES",
    "JSON_TYPE",
    "MAX_RECORDS_PER_REQUEST",
    "BasicAuth",
    "HttpRequest",
    "RequestRefused",
    "decode_request",
    "media_type",
]

FORM_TYPE: Final = "application/x-www-form-urlencoded"
JSON_TYPE: Final = "application/json"
JSON_LINES_TYPES: Final = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})
#: Most fields one form may hold: a record's attributes and extras (parse_qsl's own bound).
MAX_FORM_FIELDS: Final = 1000
#: Most records one JSON or NDJSON request may carry: a request is decoded in one turn of the
#: event loop, and a body of max-frame-bytes holds half a million one-byte elements.
MAX_RECORDS_PER_REQUEST: Final = 10_000

# The LogRecord attributes that are numbers (2.7 to 3.13); only these are converted back.
_INT_FIELDS: Final = frozenset({"levelno", "lineno", "thread", "process"})
_FLOAT_FIELDS: Final = frozenset({"created", "msecs", "relativeCreated"})
# The LogRecord attributes that may be None (str(None) arrives as 'None').
_NULLABLE_FIELDS: Final = frozenset(
    {"args", "exc_info", "exc_text", "stack_info", "funcName", "thread", "threadName", "process", "processName"}
    | {"taskName"}
)
_INT_TEXT: Final = re.compile(r"-?[0-9]{1,40}")
_FLOAT_TEXT: Final = re.compile(r"-?[0-9]{1,40}(?:\.[0-9]{0,40})?(?:[eE][-+]?[0-9]{1,4})?")
_LEVEL_NUMBERS: Final = {
    "CRITICAL": 50,
    "FATAL": 50,
    "ERROR": 40,
    "WARNING": 30,
    "WARN": 30,
    "INFO": 20,
    "DEBUG": 10,
    "NOTSET": 0,
}
_LEVEL_NAMES: Final = {50: "CRITICAL", 40: "ERROR", 30: "WARNING", 20: "INFO", 10: "DEBUG", 0: "NOTSET"}


class RequestRefused(Exception):
    """The request holds nothing to record: answer ``status`` (no dead letter: it is no record)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One complete request, as the HTTP parser hands it over (header names lower-case, as h11 gives them)."""

    method: bytes
    target: bytes
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


def media_type(content_type: bytes | None) -> str:
    """``Content-Type``'s media type, lower-case, without parameters (``""`` if absent)."""
    if content_type is None:
        return ""
    return content_type.split(b";", 1)[0].strip().decode("latin-1").lower()


def decode_request(request: HttpRequest, limits: DecodeLimits, received: float) -> list[Record | BadFrame]:
    """The records of one request, in the order sent; ``received`` (Unix seconds) is the default ``created``.

    Raises :class:`RequestRefused`: 405 for a method other than GET and POST,
    415 for a POST body of another media type, 400 for a request with no
    record at all (a GET without a query string, an empty body).  The body's
    size is the caller's to bound (``limits.max_frame_bytes``), before it is read.
    """
    method = request.method.upper()
    if method == b"GET":
        query = request.target.partition(b"?")[2]
        if not query:
            raise RequestRefused(400, "a GET without a query string holds no record")
        return [_form_record(query, limits, received)]
    if method != b"POST":
        raise RequestRefused(405, "only GET and POST carry records")
    body = request.body
    if not body.strip():
        raise RequestRefused(400, "an empty body holds no record")
    kind = media_type(request.header(b"content-type"))
    if kind == FORM_TYPE:
        return [_form_record(body, limits, received)]
    if kind == JSON_TYPE:
        return _json_document(body, limits, received)
    if kind in JSON_LINES_TYPES:
        return _json_lines(body, limits, received)
    raise RequestRefused(415, f"content type {kind or 'missing'!r}: expected a form, JSON or NDJSON")


# -- HTTPHandler's forms ----------------------------------------------------------


def _form_record(raw: bytes, limits: DecodeLimits, received: float) -> Record | BadFrame:
    """One ``urlencode(record.__dict__)`` to the record SocketHandler would have sent."""
    # urlencode escapes every byte beyond ASCII; a 2.7 sender's str that was not
    # UTF-8 becomes U+FFFD, readable, rather than a refused record.
    try:
        pairs = parse_qsl(
            raw.decode("utf-8", "replace"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="replace",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError as exc:
        return BadFrame(raw, f"form not decodable: {exc}")
    if not pairs:
        return BadFrame(raw, "form holds no fields")
    record: dict[str, Any] = {}
    for key, text in pairs:
        record[key] = _form_value(key, text)
    msg, args_text = record.get("msg"), record.get("args")
    if isinstance(msg, str) and isinstance(args_text, str):
        rendered = render_message(msg, args_text, max_depth=limits.max_depth, max_bytes=limits.max_decoded_bytes)
        if rendered is None:
            record.setdefault("args_text", args_text)
        else:
            record["msg"] = rendered
    if "args" in record:
        record["args"] = None  # as SocketHandler sends it: the message is rendered
    exc_info = record.get("exc_info")
    if exc_info is not None:
        # The repr of (type, value, traceback): the type and message, not the traceback
        # (that is exc_text, sent only when another handler formatted it first).
        record.setdefault("exc_info_text", exc_info)
        record["exc_info"] = None
    _fill_time(record, received)
    return _encode(record, raw, limits)


def _form_value(key: str, text: str) -> Any:
    """A field back from ``str(value)``: numbers and None for the attributes that held them, text otherwise."""
    if text == "None" and key in _NULLABLE_FIELDS:
        return None
    if key in _INT_FIELDS and _INT_TEXT.fullmatch(text):
        return int(text)
    if key in _FLOAT_FIELDS and _FLOAT_TEXT.fullmatch(text):
        number = float(text)
        if math.isfinite(number):
            return number
    return text


# -- JSON ------------------------------------------------------------------------


def _json_document(body: bytes, limits: DecodeLimits, received: float) -> list[Record | BadFrame]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return [BadFrame(body, f"not JSON: {exc}")]
    if type(document) is not list:
        return [_json_record(document, body, limits, received)]
    _check_count(len(document))
    # A bad element is dead-lettered as its own JSON: the letter holds just that record.
    return [_json_record(item, None, limits, received) for item in document]


def _json_lines(body: bytes, limits: DecodeLimits, received: float) -> list[Record | BadFrame]:
    lines = [line for line in map(bytes.strip, body.split(b"\n")) if line]  # blank lines: nothing sent
    _check_count(len(lines))
    events: list[Record | BadFrame] = []
    for line in lines:
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            events.append(BadFrame(line, f"line is not JSON: {exc}"))
            continue
        events.append(_json_record(value, line, limits, received))
    return events


def _check_count(count: int) -> None:
    if count > MAX_RECORDS_PER_REQUEST:
        raise RequestRefused(413, f"{count} records in one request, over {MAX_RECORDS_PER_REQUEST}")


def _json_record(value: Any, raw: bytes | None, limits: DecodeLimits, received: float) -> Record | BadFrame:
    """One JSON value to a record; ``raw`` is what a dead letter holds (None: the value's own JSON)."""
    if type(value) is not dict:
        return BadFrame(raw if raw is not None else orjson.dumps(value), f"a JSON {_json_kind(value)}, not an object")
    try:
        # The same depth and size bounds as a pickled record's (relay.decode.to_json).
        record = to_json_value(value, max_depth=limits.max_depth, max_bytes=limits.max_decoded_bytes)
    except DecodeLimitExceeded as exc:
        return BadFrame(raw if raw is not None else orjson.dumps(value), str(exc))
    if "msg" not in record and "message" in record:
        record["msg"] = record.pop("message")
    _fill_levels(record)
    _fill_time(record, received)
    return _encode(record, raw, limits)


def _json_kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _fill_levels(record: dict[str, Any]) -> None:
    """Make ``levelname`` and ``levelno`` agree when the sender gave only one (stdlib names and numbers)."""
    name, number = record.get("levelname"), record.get("levelno")
    if number is None and isinstance(name, str):
        found = _LEVEL_NUMBERS.get(name.upper())
        if found is not None:
            record["levelno"] = found
            record["levelname"] = _LEVEL_NAMES[found]
    elif name is None and type(number) is int:
        record["levelname"] = _LEVEL_NAMES.get(number, f"Level {number}")


def _fill_time(record: dict[str, Any], received: float) -> None:
    """``created`` a number of Unix seconds (the receive time if the sender gave none that reads as one), and ``msecs``.

    A ``created`` that was not a number is kept as ``created_text``; an ISO
    8601 time is read as such (UTC unless it says otherwise).
    """
    created = record.get("created")
    if type(created) is not float or not math.isfinite(created):
        number = _seconds(created)
        if number is None:
            if created is not None:
                record.setdefault("created_text", created)
            number = received
        record["created"] = number
    if "msecs" not in record:
        seconds = record["created"]
        record["msecs"] = float(int((seconds - int(seconds)) * 1000))


def _seconds(value: Any) -> float | None:
    if type(value) is int:
        return float(value)
    if type(value) is not str:
        return None
    if _FLOAT_TEXT.fullmatch(value):
        number = float(value)
        return number if math.isfinite(number) else None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _encode(record: dict[str, Any], raw: bytes | None, limits: DecodeLimits) -> Record | BadFrame:
    try:
        # Exact size: orjson's bytes keep its whole working buffer (relay.decode.frames).
        encoded = exact_size(orjson.dumps(record))
    except orjson.JSONEncodeError as exc:
        return BadFrame(raw if raw is not None else repr(record).encode(), f"record not encodable: {exc}")
    if len(encoded) > limits.max_decoded_bytes:
        return BadFrame(raw if raw is not None else encoded, "decoded record exceeds the maximum decoded size")
    return encoded


# -- basic auth ------------------------------------------------------------------


class BasicAuth:
    """``Authorization: Basic`` against configured ``(user, password)`` pairs; none configured: every request passes.

    Every pair is compared, each in constant time (``hmac.compare_digest``),
    so the answer's timing tells neither which user exists nor how much of
    a password matched.
    """

    __slots__ = ("_pairs",)

    def __init__(self, credentials: Sequence[tuple[str, str]]) -> None:
        self._pairs = tuple((user.encode(), password.encode()) for user, password in credentials)

    @property
    def required(self) -> bool:
        return bool(self._pairs)

    def check(self, authorization: bytes | None) -> tuple[bool, str]:
        """``(accepted, user)``: the user name as sent (for the log, never the password), ``""`` if none was."""
        if not self._pairs:
            return True, ""
        if authorization is None:
            return False, ""
        scheme, _, token = authorization.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return False, ""
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False, ""
        user, colon, password = decoded.partition(b":")
        accepted = False
        for known_user, known_password in self._pairs:
            # Both compared, always: & not and.
            accepted |= hmac.compare_digest(user, known_user) & hmac.compare_digest(password, known_password)
        return accepted and bool(colon), user.decode("utf-8", "replace")
