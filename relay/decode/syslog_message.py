"""One syslog message to a record: RFC 5424 and RFC 3164, told apart per message.

Sans-I/O: :func:`syslog_record` takes the bytes of one message (a UDP
datagram's, or one framed by :class:`relay.decode.syslog_frames.SyslogStreamDecoder`)
and returns the record's JSON or a :class:`~relay.decode.frames.BadFrame`.

The record is what ``logging.makeLogRecord`` needs to render it like a
``SocketHandler`` record:

- the severity gives ``levelname``/``levelno`` (emerg, alert, crit →
  CRITICAL; err → ERROR; warning → WARNING; notice, info → INFO; debug → DEBUG);
- the APP-NAME (5424) or TAG (3164) gives ``name`` (``"syslog"`` when absent);
- the MSG gives ``msg``, the timestamp ``created`` and ``msecs`` (the time
  the catcher received it when the message has none);
- a numeric PROCID gives ``process``;
- facility, severity, hostname, procid, msgid, structured data and which RFC
  the message followed are kept under the one key ``syslog``.

What a relay must accept (RFC 3164 §4.3.3): a message without a PRI part is
``user.notice``; one whose timestamp does not parse keeps its text in
``msg``.  What is refused (a dead letter, the other messages of the
connection go on): an RFC 5424 header that is malformed (a bad timestamp, a
field too long, broken structured data), a PRI that is not 0-191.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any, Final

import orjson

from relay.common import speedups
from relay.decode.frames import BadFrame, Record, exact_size

__all__ = ["IMPLEMENTATION", "LEVELS", "rfc5424_json", "syslog_record", "syslog_record_python"]

#: Severity (0-7) → (levelname, levelno).
LEVELS: Final = (
    ("CRITICAL", 50),  # emerg
    ("CRITICAL", 50),  # alert
    ("CRITICAL", 50),  # crit
    ("ERROR", 40),  # err
    ("WARNING", 30),  # warning
    ("INFO", 20),  # notice
    ("INFO", 20),  # info
    ("DEBUG", 10),  # debug
)
#: PRI of a message that has none (RFC 3164 §4.3.3): user.notice.
DEFAULT_PRI: Final = 13
#: The first bytes of a refused message kept in its dead-letter reason.
EXCERPT: Final = 64

_BOM: Final = b"\xef\xbb\xbf"
# RFC 5424 §6: HEADER = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID
# (printable US-ASCII fields of at most 255, 48, 128 and 32 characters).
_HEADER_5424: Final = re.compile(
    rb"1 (?P<ts>[!-~]+) (?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<proc>[!-~]{1,128}) (?P<msgid>[!-~]{1,32})"
    rb"(?: |$)"
)
# The usual RFC 5424 message whole, PRI to MSGID, in one match (what :func:`_parse` would find in
# four steps; any other message takes those steps): a PRI without a leading zero, a timestamp
# that is nil or of _TIMESTAMP_5424's form (its fraction and zone as groups 3 and 4).
_FAST_5424: Final = re.compile(
    rb"<(0|[1-9]\d{0,2})>1 (-|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d{1,6}))?(Z|[+-]\d\d:\d\d)) "
    rb"([!-~]{1,255}) ([!-~]{1,48}) ([!-~]{1,128}) ([!-~]{1,32})(?: |$)"
)
_TIMESTAMP_5424: Final = re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:\d\d)\Z")
# RFC 3164 §4.1.2: "Mmm dd hh:mm:ss", the day padded with a space.
_TIMESTAMP_3164: Final = re.compile(rb"([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) ")
_MONTHS: Final = {name.encode(): number for number, name in enumerate(calendar.month_abbr) if name}
# A TAG: up to 48 alphanumerics (and the usual -_./), then an optional [PID], then a colon and a
# space (or the end): "http://host" and "12:30 done" are messages, not tags.  After a [PID] the
# colon alone will do ("app[12]:text" is no sentence).
_TAG_3164: Final = re.compile(rb"([\w\-./]{1,48})(?:\[([^\]\s]{1,128})\]: ?|:(?: |\Z))")
_SD_NAME: Final = re.compile(rb"[!#-<>-\\^-~]{1,32}")  # PRINTUSASCII except = SP ] "


class _Malformed(ValueError):
    """The message breaks its RFC in a way a relay must not guess past."""


def _load() -> Callable[[bytes, float], bytes | None] | None:
    extension = speedups.load("relay.decode._syslog")
    return extension.rfc5424_json if extension is not None else None


#: ``rfc5424_json(message, received)``: the C speedup (``relay/decode/_syslog.c``): for the usual
#: RFC 5424 message (what :data:`_FAST_5424` matches, a valid date, no structured data, a MSG of
#: valid UTF-8) exactly the bytes :func:`syslog_record_python` returns; None for anything else, and
#: None where the extension is not built or ``LOGRELAY_PURE_PYTHON=1`` is set.
rfc5424_json: Final = _load()
#: "c", or "python" where only the Python path exists.
IMPLEMENTATION: Final = "c" if rfc5424_json is not None else "python"


def syslog_record(message: bytes, received: float) -> Record | BadFrame:
    """The record JSON of one syslog message, or why it is refused.

    ``received``: Unix time the catcher received it, the record's ``created``
    when the message carries no timestamp.  Trailing LF, CR and NUL are not
    part of the message (``SysLogHandler`` appends a NUL).  The C speedup
    answers where it is sure, :func:`syslog_record_python` (the reference)
    everywhere else.
    """
    if rfc5424_json is not None:
        record = rfc5424_json(message, received)
        if record is not None:
            return record
    return syslog_record_python(message, received)


def syslog_record_python(message: bytes, received: float) -> Record | BadFrame:
    """:func:`syslog_record` in Python: the reference the C speedup (``relay/decode/_syslog.c``) follows."""
    text = message.rstrip(b"\n\r\x00")
    try:
        fast = _FAST_5424.match(text)
        if fast is not None and int(fast.group(1)) <= 191:
            fields = _fast_5424(fast, text, received)
        else:
            fields = _parse(text, received)
    except _Malformed as exc:
        return BadFrame(message, f"not a syslog message: {exc} (starts {_excerpt(text)})")
    except Exception as exc:  # as decode_payload's callers: one bad message, never a dead connection or input
        return BadFrame(message, f"undecodable syslog message: {type(exc).__name__}: {exc} (starts {_excerpt(text)})")
    # Records wait in the publisher's buffer: without the copy each kept orjson's working buffer
    # (100,000 held 410 MiB against 43).
    return exact_size(orjson.dumps(fields))


def _parse(text: bytes, received: float) -> dict[str, Any]:
    pri, rest = _pri(text)
    facility, severity = divmod(pri, 8)
    if rest[:2] == b"1 ":
        return _rfc5424(facility, severity, rest, received)
    return _rfc3164(facility, severity, rest, received)


def _pri(text: bytes) -> tuple[int, bytes]:
    """The PRI part's value and what follows it; user.notice when there is none."""
    if text[:1] != b"<":
        return DEFAULT_PRI, text
    end = text.find(b">", 1, 5)
    digits = text[1:end]
    if end < 0 or not digits.isdigit() or (len(digits) > 1 and digits[0] == 0x30):
        return DEFAULT_PRI, text  # not a PRI part: the whole is the message (RFC 3164 §4.3.3)
    pri = int(digits)
    if pri > 191:
        raise _Malformed(f"PRI {pri} is beyond 191")
    return pri, text[end + 1 :]


def _record(
    facility: int,
    severity: int,
    name: str | None,
    msg: str,
    created: float,
    syslog: dict[str, Any],
    procid: str | None,
) -> dict[str, Any]:
    levelname, levelno = LEVELS[severity]
    record: dict[str, Any] = {
        "name": name or "syslog",
        "msg": msg,
        "args": None,
        "levelname": levelname,
        "levelno": levelno,
        "created": created,
        "msecs": (created - int(created)) * 1000.0,
    }
    if procid is not None and procid.isascii() and procid.isdigit() and len(procid) <= 10:
        record["process"] = int(procid)
    syslog["facility"] = facility
    syslog["severity"] = severity
    record["syslog"] = syslog
    return record


def _rfc5424(facility: int, severity: int, rest: bytes, received: float) -> dict[str, Any]:
    header = _HEADER_5424.match(rest)
    if header is None:
        raise _Malformed("an RFC 5424 header with a field missing or too long")
    ts, host, app, proc, msgid = header.group("ts", "host", "app", "proc", "msgid")
    created = received if ts == b"-" else _timestamp_5424(ts)
    return _rfc5424_body(facility, severity, created, host, app, proc, msgid, rest[header.end() :])


def _fast_5424(header: re.Match[bytes], text: bytes, received: float) -> dict[str, Any]:
    """:func:`_parse` of a message :data:`_FAST_5424` matched, with its PRI checked: the same record."""
    pri, ts, fraction, zone, host, app, proc, msgid = header.groups()
    facility, severity = divmod(int(pri), 8)
    if ts == b"-":
        created = received
    else:
        base = _seconds_seen.get(ts[:19] + zone)
        if base is None:
            created = _timestamp_5424(ts)
        else:
            created = base + int(fraction.ljust(6, b"0")) / 1_000_000 if fraction else base
    return _rfc5424_body(facility, severity, created, host, app, proc, msgid, text[header.end() :])


def _rfc5424_body(
    facility: int,
    severity: int,
    created: float,
    host_field: bytes,
    app_field: bytes,
    proc_field: bytes,
    msgid_field: bytes,
    body: bytes,
) -> dict[str, Any]:
    """The record of an RFC 5424 message from its header's fields (ASCII, ``-`` for nil) and what follows them."""
    host = None if host_field == b"-" else host_field.decode("ascii")
    app = None if app_field == b"-" else app_field.decode("ascii")
    proc = None if proc_field == b"-" else proc_field.decode("ascii")
    msgid = None if msgid_field == b"-" else msgid_field.decode("ascii")
    structured: dict[str, dict[str, str]] | None = None
    if body[:1] == b"-":
        body = body[2:] if body[1:2] == b" " else body[1:]
    elif body[:1] == b"[":
        structured, body = _structured_data(body)
    elif body:
        raise _Malformed("no STRUCTURED-DATA (nor its nil value '-')")
    if body.startswith(_BOM):
        body = body[3:]
    syslog: dict[str, Any] = {"rfc": 5424, "hostname": host, "appname": app, "procid": proc, "msgid": msgid}
    if structured:
        syslog["structured_data"] = structured
    return _record(facility, severity, app, _text(body), created, syslog, proc)


# Whole seconds (and zone) → Unix time, for the timestamps seen lately: a burst of messages
# shares a handful of seconds, and building a datetime per message was a third of the parse.
_seconds_seen: dict[bytes, float] = {}
_SECONDS_KEPT: Final = 4096


def _remember(key: bytes, seconds: float) -> float:
    """Keep ``seconds`` for ``key`` (at most _SECONDS_KEPT kept: senders choose the keys); return it."""
    if len(_seconds_seen) >= _SECONDS_KEPT:
        _seconds_seen.clear()
    _seconds_seen[key] = seconds
    return seconds


def _timestamp_5424(stamp: bytes) -> float:
    found = _TIMESTAMP_5424.match(stamp)
    if found is None:
        # Any byte may be there: refused, never a crash; quoted short (a field may be a megabyte).
        raise _Malformed(f"timestamp {stamp[:EXCERPT].decode('ascii', 'backslashreplace')!r} is not RFC 3339")
    fraction, zone = found.group(7, 8)
    key = found.group(0)[:19] + zone
    base = _seconds_seen.get(key)
    if base is None:
        base = _remember(key, _whole_seconds(stamp.decode("ascii"), found))
    return base + int(fraction.ljust(6, b"0")) / 1_000_000 if fraction else base


def _whole_seconds(text: str, found: re.Match[bytes]) -> float:
    year, month, day, hour, minute, second, _, zone = found.groups()
    try:
        offset = dt.UTC
        if zone != b"Z":
            sign = -1 if zone[:1] == b"-" else 1
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            offset = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
        moment = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=offset
        )  # a leap second (60) is refused: datetime has none
    except ValueError as exc:
        raise _Malformed(f"timestamp {text[:EXCERPT]!r}: {exc}") from None
    return moment.timestamp()


def _structured_data(body: bytes) -> tuple[dict[str, dict[str, str]], bytes]:
    """RFC 5424 §6.3: ``[ID PARAM="VALUE" ...]...``; values unescape ``\\"``, ``\\\\`` and ``\\]``."""
    elements: dict[str, dict[str, str]] = {}
    at = 0
    while body[at : at + 1] == b"[":
        name = _SD_NAME.match(body, at + 1)
        if name is None:
            raise _Malformed("a STRUCTURED-DATA element without an SD-ID")
        params: dict[str, str] = {}
        at = name.end()
        while body[at : at + 1] == b" ":
            param = _SD_NAME.match(body, at + 1)
            if param is None or body[param.end() : param.end() + 2] != b'="':
                raise _Malformed('a STRUCTURED-DATA parameter that is not NAME="VALUE"')
            value, at = _sd_value(body, param.end() + 2)
            params[param.group().decode("ascii")] = value
        if body[at : at + 1] != b"]":
            raise _Malformed("a STRUCTURED-DATA element not closed by ']'")
        at += 1
        elements[name.group().decode("ascii")] = params
    if at < len(body):
        if body[at : at + 1] != b" ":
            raise _Malformed("STRUCTURED-DATA not followed by a space")
        at += 1
    return elements, body[at:]


def _sd_value(body: bytes, at: int) -> tuple[str, int]:
    """The PARAM-VALUE starting at ``at`` (after its opening quote) and where its closing quote ends."""
    out = bytearray()
    quote = body.find(b'"', at)
    while True:
        if quote < 0:
            raise _Malformed("a STRUCTURED-DATA value without its closing quote")
        slash = body.find(b"\\", at, quote)
        if slash < 0:
            out += body[at:quote]
            return _text(bytes(out)), quote + 1
        out += body[at:slash]
        escaped = body[slash + 1 : slash + 2]
        # Only ", \ and ] are escaped; a backslash before anything else stays (RFC 5424 §6.3.3).
        out += escaped if escaped in (b'"', b"\\", b"]") else b"\\" + escaped
        at = slash + 2
        if at > quote:  # that quote was escaped: the next one (each byte searched once)
            quote = body.find(b'"', at)


def _rfc3164(facility: int, severity: int, rest: bytes, received: float) -> dict[str, Any]:
    """BSD syslog: ``TIMESTAMP HOSTNAME TAG[PID]: MSG``, each part as far as it is there.

    A message with no timestamp (``SysLogHandler`` sends ``<PRI>`` and the
    formatted record) has no hostname either; a TAG is only taken when it
    ends in a colon, as ``logger`` and the stdlib's ``ident`` write it.
    """
    created = received
    host: str | None = None
    stamp = _TIMESTAMP_3164.match(rest)
    if stamp is not None and stamp.group(1) in _MONTHS:
        created = _timestamp_3164(stamp, received)
        rest = rest[stamp.end() :]
        space = rest.find(b" ")
        if space > 0 and rest[space - 1 : space] != b":":
            host = rest[:space].decode("utf-8", "backslashreplace")
            rest = rest[space + 1 :]
    tag: str | None = None
    procid: str | None = None
    found = _TAG_3164.match(rest)
    if found is not None:
        tag = found.group(1).decode("ascii")
        # RFC 3164 relays take any PID: bytes beyond ASCII are kept visible, as in the message.
        procid = found.group(2).decode("utf-8", "backslashreplace") if found.group(2) else None
        rest = rest[found.end() :]
    if rest.startswith(_BOM):
        rest = rest[3:]
    syslog: dict[str, Any] = {"rfc": 3164, "hostname": host, "appname": tag, "procid": procid}
    return _record(facility, severity, tag, _text(rest), created, syslog, procid)


def _timestamp_3164(stamp: re.Match[bytes], received: float) -> float:
    """The catcher's local time, the year the one that puts it nearest to ``received``."""
    # The year is chosen by ``received``: the same stamp within the same hour gets the same answer.
    key = stamp.group(0) + b"%d" % (int(received) // 3600)
    created = _seconds_seen.get(key)
    if created is None:
        created = _remember(key, _nearest_year(stamp, received))
    return created


def _nearest_year(stamp: re.Match[bytes], received: float) -> float:
    month = _MONTHS[stamp.group(1)]
    day, hour, minute, second = (int(stamp.group(n)) for n in (2, 3, 4, 5))
    year = time.localtime(received).tm_year
    best = received
    distance = float("inf")
    for candidate in (year - 1, year, year + 1):  # Dec 31 sent, Jan 1 received, and the reverse
        try:
            moment = time.mktime((candidate, month, day, hour, minute, second, 0, 0, -1))
        except (OverflowError, ValueError):
            continue
        if abs(moment - received) < distance and _same_day(moment, month, day):
            best, distance = moment, abs(moment - received)
    return best


def _same_day(moment: float, month: int, day: int) -> bool:
    """Whether mktime kept the date (it rolls Feb 29 of a common year over to Mar 1)."""
    local = time.localtime(moment)
    return local.tm_mon == month and local.tm_mday == day


def _text(raw: bytes) -> str:
    """UTF-8 as it is; bytes that are not UTF-8 kept visible as ``\\xNN``."""
    return raw.decode("utf-8", "backslashreplace")


def _excerpt(text: bytes) -> str:
    return repr(text[:EXCERPT])
