"""Checking ``--format`` before the first record: what cannot render is refused, what looks mistyped is named.

A format is read once at start, field by field, the way ``%`` formatting
reads it.  :func:`check_format` raises :class:`FormatError` for what could
never render (a field with no conversion character, an unclosed ``%(``, a
conversion that the attribute's type refuses, such as ``%(message)d``) with a
message naming the field and the fix, where Python would only say
``'levelname'`` or ``incomplete format``; it returns a warning for each field
that is neither a ``logging.LogRecord`` attribute nor one the relay adds,
naming the nearest known one.  :func:`render_sample` then renders a typical
record's entry through the formatter the consumer will use, both ways it
renders (one entry, a read reply), so that anything else that fails, fails
at start rather than sending every record to the dead letters.
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

from consumers.formatting import RECORD_ATTRIBUTES, SET_BY_FORMATTER, EntryFormatter, LineFormatter
from relay.common import stream

__all__ = ["KNOWN_FIELDS", "MAX_FORMAT_LENGTH", "FormatError", "check_format", "render_sample"]

#: The longest format taken: the checkpoint records it (consumers.checkpoint), in a slot of bounded size.
MAX_FORMAT_LENGTH: Final = 1024

#: LogRecord attributes of Pythons newer than this one (3.12 added taskName): senders may run those.
_NEWER_RECORD_ATTRIBUTES: Final = frozenset({"taskName"})
#: Attributes the catcher's inputs add to a record (docs/stream-format.md): syslog's structured
#: header, and HTTPHandler's text of what it could not turn back into values.
INPUT_ATTRIBUTES: Final = frozenset({"syslog", "args_text", "exc_info_text", "created_text"})
#: The fields a format may name without a warning.
KNOWN_FIELDS: Final = RECORD_ATTRIBUTES | _NEWER_RECORD_ATTRIBUTES | SET_BY_FORMATTER | INPUT_ATTRIBUTES

_CONVERSIONS: Final = frozenset("diouxXeEfFgGcrsa")
# What may stand between a field's closing parenthesis and its conversion character.
_SPEC: Final = re.compile(r"[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d*))?")


class FormatError(ValueError):
    """A format that cannot render a record; the message says which field and how to fix it."""


@dataclass(frozen=True, slots=True)
class _Field:
    text: str  # as written: %(levelname)-8s
    name: str
    spec: str  # flags, width, precision and conversion: -8s


def _fields(fmt: str) -> list[_Field]:
    """The ``%(name)spec`` fields of ``fmt``, as ``%`` formatting reads them; FormatError for what it refuses."""
    found: list[_Field] = []
    position = 0
    while (start := fmt.find("%", position)) >= 0:
        after = fmt[start + 1 : start + 2]
        if after == "%":
            position = start + 2  # "%%": a literal percent sign
            continue
        if after != "(":
            shown = f"'%{after}' at position {start}" if after else "a lone '%' at the end"
            raise FormatError(f"{shown}: fields are named, e.g. %(message)s; write %% for a literal '%'")
        close = fmt.find(")", start)
        if close < 0:
            raise FormatError(f"{fmt[start : start + 30]!r} has no closing parenthesis: write %(name)s")
        name = fmt[start + 2 : close]
        head = fmt[start : close + 1]
        if not name:
            raise FormatError(f"{head} names no attribute: write e.g. %(message)s")
        spec = _SPEC.match(fmt, close + 1)
        assert spec is not None  # it matches the empty string
        conversion = fmt[spec.end() : spec.end() + 1]
        written = head + spec.group(0) + conversion
        if "*" in spec.group(0):
            raise FormatError(
                f"{written}: '*' takes a width or precision from an argument, which a record has not; "
                f"write a number, e.g. {head}20s"
            )
        if not conversion or not conversion.isalpha():
            raise FormatError(f"missing conversion character after {head}: write e.g. {head}s")
        if conversion not in _CONVERSIONS:
            raise FormatError(
                f"{written}: {conversion!r} is not a conversion character (s, d, f, r, ...): write e.g. {head}s"
            )
        found.append(_Field(written, name, spec.group(0) + conversion))
        position = spec.end() + 1
    return found


def _sample_record() -> dict[str, Any]:
    """A typical record as a SocketHandler sends it: args merged into msg, no exc_info."""
    record = logging.LogRecord(
        "app.web", logging.WARNING, "/srv/app/web.py", 42, "request %s failed", ("r-17",), None, "handle"
    )
    attributes = dict(record.__dict__, msg=record.getMessage(), args=None, exc_info=None)
    attributes.pop("message", None)
    attributes.setdefault("taskName", None)
    return attributes


_CLIENT, _CATCHER, _RECEIVED = "10.1.2.3:40000", "catcher-1", "1764062593.123456"


def _sample_values() -> dict[str, Any]:
    """What each known attribute holds on a typical record, with the fields the formatter sets."""
    values = _sample_record()
    values.update(
        message=values["msg"],
        asctime="2026-12-07 04:50:00,123",
        client=_CLIENT,
        catcher=_CATCHER,
        received=float(_RECEIVED),
        entry_id="1764062593123-0",
    )
    return values


def _describe(value: object) -> str:
    return "None on most records" if value is None else f"a {type(value).__name__}"


def check_format(spec: str, placeholder: str = "-") -> list[str]:
    """Check a ``--format`` value (a logging %-style format, or ``json``) before it renders anything.

    Raises :class:`FormatError` if no record could render with it; returns
    one warning per field that is neither a LogRecord attribute nor a field
    the relay adds (it renders as ``placeholder`` on records without it).
    """
    if len(spec) > MAX_FORMAT_LENGTH:
        raise FormatError(f"longer than {MAX_FORMAT_LENGTH} characters ({len(spec)})")
    if spec == "json":
        return []
    fields = _fields(spec)
    if not fields:
        raise FormatError(f"{spec!r} names no record attribute: write e.g. %(message)s, or 'json'")
    values = _sample_values()
    warnings: list[str] = []
    for field in fields:
        if field.name in values:
            value = values[field.name]
            try:
                _ = f"%{field.spec}" % (value,)  # what the formatter will do with such a value
            except (TypeError, ValueError, OverflowError) as exc:
                raise FormatError(
                    f"{field.text} cannot render {field.name}, {_describe(value)} ({exc}): write %({field.name})s"
                ) from exc
        elif field.name not in KNOWN_FIELDS and not any(field.name in warning for warning in warnings):
            nearest = difflib.get_close_matches(field.name, sorted(KNOWN_FIELDS), n=1)
            hint = f"did you mean %({nearest[0]}){field.spec}?" if nearest else "an extra= attribute of some records?"
            warnings.append(
                f"--format field {field.text} is not a LogRecord attribute or relay field; {hint} "
                f"it will render as {placeholder!r} on records without it"
            )
    return warnings


def render_sample(formatter: EntryFormatter) -> bytes:
    """Render a typical record's entry through ``formatter``, as one entry and as a read reply; return the line.

    Raises :class:`FormatError` if it cannot: every record would go to the dead letters.
    """
    entry_id = b"1764062593123-0"
    values = [
        stream.SCHEMA_VERSION.encode(),
        orjson.dumps(_sample_record()),
        _CLIENT.encode(),
        _CATCHER.encode(),
        _RECEIVED.encode(),
        b"0123456789abcdef:1",
    ]
    names = [name.encode() for name in stream.RECORD_FIELDS]
    fields = dict(zip(names, values, strict=True))
    try:
        line = formatter.format(entry_id, fields)
        formatter.format_items([[entry_id, [item for pair in fields.items() for item in pair]]])
    except Exception as exc:
        raise FormatError(f"cannot render a typical record: {type(exc).__name__}: {exc}") from exc
    # A value its conversion refuses renders as the placeholder (a record is written, not
    # dead-lettered); on the typical record it means the field is wrong for every record.
    unrenderable = formatter.unrenderable if isinstance(formatter, LineFormatter) else None
    if unrenderable is not None:
        raise FormatError(f"cannot render a typical record: {unrenderable}")
    return line
