"""Turning stream entries back into log lines.

:class:`LineFormatter` renders an entry (see the stream contract, relay.common.stream) as
``logging.Formatter`` would render the original record: the record is
restored with ``logging.makeLogRecord`` and the relay metadata is added as
attributes (``client``, ``catcher``, ``received``, ``entry_id``).  Records come
from many applications, so a ``%(name)s`` field that a record lacks renders
as a placeholder (``-``) instead of failing.

:class:`JsonLineFormatter` writes the record's attributes as sent, at the top
level, with the relay metadata under the ``logrelay`` key.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Sequence
from typing import Any, Final, Protocol

import orjson

from consumers.json_check import is_json_object
from consumers.read_replies import Pieces, TextPlan, json_lines, text_lines
from relay.common import stream

__all__ = [
    "DEFAULT_FORMAT",
    "RECORD_ATTRIBUTES",
    "SET_BY_FORMATTER",
    "EntryError",
    "JsonLineFormatter",
    "LineFormatter",
    "build_formatter",
    "record_json",
    "text_plan",
]

DEFAULT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s [%(client)s] %(message)s"
SUPPORTED_SCHEMA: Final = stream.SCHEMA_VERSION.encode()
# The usual entry's field names (relay.common.stream), as a read reply has them.  seq, the
# record's identity, is not rendered: a line is the same with or without it.
_VERSION, _RECORD, _CLIENT, _CATCHER, _RECEIVED, _SEQ = (name.encode() for name in stream.RECORD_FIELDS)
METADATA_KEY: Final = "logrelay"
# The key as it appears in a record's JSON, and as the line's last member.
_METADATA_NAME: Final = b'"' + METADATA_KEY.encode() + b'"'
_METADATA_MEMBER: Final = _METADATA_NAME + b":"

#: Every attribute ``LogRecord.__init__`` sets.  A record that carries them
#: all (every record a SocketHandler sends) is what ``makeLogRecord`` would
#: make of it: its own attributes and nothing else.
RECORD_ATTRIBUTES: Final = frozenset(logging.makeLogRecord({}).__dict__)

#: Attributes the formatters set on every record: the message, the time and the relay metadata.
SET_BY_FORMATTER: Final = frozenset({"message", "asctime", "client", "catcher", "received", "entry_id"})

# A %-style field: %(name)<flags><width><.precision><conversion>; or "%%",
# matched first so that "%%(x)s" is the text "%(x)s", as % formatting reads it
# (a match without a name).
_FIELD = re.compile(r"%%|%\((?P<name>[^)]*)\)(?P<spec>[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa%])")


class EntryError(ValueError):
    """The entry cannot be rendered (wrong schema, no record, invalid JSON)."""


class EntryFormatter(Protocol):
    def format(self, entry_id: bytes, fields: dict[bytes, bytes]) -> bytes:
        """Return the entry as one or more complete lines (ending with a newline)."""
        ...

    def format_items(self, items: Sequence[Any]) -> Pieces:
        """Lines for a read reply's entries (``[id, [field, value, ...]]``, as the parser gave them), in order.

        Bytes hold the lines of consecutive entries; an int is the index of
        an entry left to :meth:`format` (which renders it or says why not).
        """
        ...


def record_json(fields: dict[bytes, bytes]) -> bytes:
    """An entry's ``record`` field (EntryError if the entry is of another schema or has none)."""
    version = fields.get(_VERSION)
    if version != SUPPORTED_SCHEMA:
        raise EntryError(f"unsupported entry schema version {version!r}")
    record = fields.get(_RECORD)
    if record is None:
        raise EntryError("entry has no record field")
    return record


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def load_record(record: bytes) -> Any:
    """Parse a record's JSON; raise :class:`EntryError` if it is not JSON.

    orjson first.  It refuses one thing JSON allows and the catcher writes:
    a ``\\ud800`` escape for a lone surrogate (a string that has no UTF-8
    form, see relay.decode.frames), so what orjson refuses goes to the standard
    library's parser, kept strict (UTF-8 only, no NaN or Infinity).
    """
    try:
        return orjson.loads(record)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(record.decode("utf-8"), parse_constant=_reject_constant)
        except ValueError:
            raise EntryError(f"record is not valid JSON: {exc}") from exc


class _Metadata:
    """The relay's attributes of an entry (client, catcher, received, entry_id).

    Every record of one socket read shares its client, catcher and receive
    time, so what is built from those three is kept for the next entry.
    """

    __slots__ = ("_key", "_shared", "_shared_json")

    def __init__(self) -> None:
        self._key: tuple[bytes | None, bytes | None, bytes | None] | None = None
        self._shared: dict[str, Any] = {}
        self._shared_json = b""

    def _load(self, fields: dict[bytes, bytes]) -> None:
        self._load_values(fields.get(_CLIENT), fields.get(_CATCHER), fields.get(_RECEIVED))

    def _load_values(self, client: bytes | None, catcher: bytes | None, received: bytes | None) -> None:
        key = (client, catcher, received)
        if key == self._key:
            return
        try:
            received_value: float | str = float(received or b"")
        except ValueError:
            received_value = (received or b"").decode("utf-8", "replace")
        self._shared = {
            "client": (b"-" if client is None else client).decode("utf-8", "replace"),
            "catcher": (b"-" if catcher is None else catcher).decode("utf-8", "replace"),
            "received": received_value,
        }
        # {"client":...,"catcher":...,"received":...  (the entry id follows)
        self._shared_json = orjson.dumps(self._shared)[:-1]
        self._key = key

    def attributes(self, entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
        self._load(fields)
        return {**self._shared, "entry_id": entry_id.decode("ascii", "replace")}

    def add_values(self, attributes: dict[str, Any], entry_id: bytes, metadata: list[bytes]) -> None:
        """:meth:`add_to` for the rest of a usual entry's fields: client, its value, catcher, ..., received, ...
        and maybe seq, its value (which renders nowhere).

        Raises ``EntryError`` if they are not those three (or four), in that order.
        """
        if (
            (len(metadata) != 6 and (len(metadata) != 8 or metadata[6] != _SEQ))
            or metadata[0] != _CLIENT
            or metadata[2] != _CATCHER
            or metadata[4] != _RECEIVED
        ):
            raise EntryError("not the usual entry")
        self._load_values(metadata[1], metadata[3], metadata[5])
        attributes.update(self._shared)
        attributes["entry_id"] = entry_id.decode("ascii", "replace")

    def add_to(self, attributes: dict[str, Any], entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        """Set the entry's relay attributes in ``attributes`` (a record's ``__dict__``)."""
        self._load(fields)
        attributes.update(self._shared)
        attributes["entry_id"] = entry_id.decode("ascii", "replace")

    def texts(self, client: bytes, catcher: bytes, received: bytes) -> tuple[bytes, bytes, bytes]:
        """How ``%(client)s``, ``%(catcher)s`` and ``%(received)s`` render for these values, as UTF-8."""
        self._load_values(client, catcher, received)
        shared = self._shared
        return (
            str(shared["client"]).encode("utf-8", "backslashreplace"),
            str(shared["catcher"]).encode("utf-8", "backslashreplace"),
            str(shared["received"]).encode("utf-8", "backslashreplace"),
        )

    def shared_json(self, client: bytes, catcher: bytes, received: bytes) -> bytes:
        """``{"client":...,"catcher":...,"received":...`` (no closing brace): the part every entry of a read shares."""
        self._load_values(client, catcher, received)
        return self._shared_json

    def json(self, entry_id: bytes, fields: dict[bytes, bytes]) -> bytes:
        self._load(fields)
        # Stream ids are ASCII digits and a dash: nothing to escape.  Anything
        # else (a forged id) goes through orjson.
        if entry_id.replace(b"-", b"").isdigit():
            return self._shared_json + b',"entry_id":"' + entry_id + b'"}'
        return orjson.dumps(self.attributes(entry_id, fields))


class _TolerantFormatter(logging.Formatter):
    """A Formatter whose missing fields render as a placeholder.

    The format is split once into fields; per record, fields the record
    lacks are replaced by the placeholder text (one rewritten format string
    per set of missing names, cached), so ``%(process)d`` on a record without
    ``process`` gives ``-`` rather than a TypeError.
    """

    def __init__(self, fmt: str, placeholder: str) -> None:
        super().__init__(fmt, style="%")
        # strftime's text of the last second asked for: records come in time order.
        self._last_second: tuple[int, str] = (-(2**63), "")
        self._fmt_text = fmt
        self._placeholder = placeholder.replace("%", "%%")
        self._fields = frozenset(
            m.group("name") for m in _FIELD.finditer(fmt) if m.group("name") is not None and m.group("spec") != "%"
        )
        self._variants: dict[frozenset[str], str] = {}
        #: The last field a record's value could not render through (its placeholder was written
        #: instead), and why: ``%(process)d: TypeError: ...``; None until one could not.
        self.unrenderable: str | None = None
        self._uses_time = super().usesTime()
        #: The attributes whose absence makeLogRecord would fill in visibly:
        #: those of the format, and those format_attributes reads.
        self.needs = (self._fields & RECORD_ATTRIBUTES) | {
            "msg",
            "created",
            "msecs",
            "exc_info",
            "exc_text",
            "stack_info",
        }
        # Every field is then there (no placeholders to check for) unless
        # the format names attributes only some records carry (extras).
        self._always_there = self._fields <= self.needs | SET_BY_FORMATTER

    def usesTime(self) -> bool:
        """``logging.Formatter.usesTime``, searched once: the format never changes."""
        return self._uses_time

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """``logging.Formatter.formatTime``, calling strftime once per second of records, not once per record."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self._asctime(record.created, record.msecs)

    def _asctime(self, created: float, msecs: float) -> str:
        second = math.floor(created)
        cached_second, text = self._last_second
        if second != cached_second:
            text = self.second_text(second)
            self._last_second = (second, text)
        msec_format = self.default_msec_format
        return msec_format % (text, msecs) if msec_format else text

    def second_text(self, second: int) -> str:
        """asctime of a record created in that second, without the milliseconds."""
        return time.strftime(self.default_time_format, self.converter(second))

    def second_bytes(self, second: int) -> bytes:
        return self.second_text(second).encode("utf-8", "backslashreplace")

    def formatMessage(self, record: logging.LogRecord) -> str:
        try:
            return self._message(record.__dict__)
        except (TypeError, ValueError):
            return self._fill_unrenderable(record.__dict__)

    def format_attributes(self, values: dict[str, Any]) -> str:
        """``Formatter.format`` of a record whose attributes are ``values``: with every attribute
        of :attr:`needs` and the relay metadata, ``args`` None and ``exc_info`` empty.

        What ``format`` does with such a record, without making one: the
        message is ``str(msg)``, then asctime, the format, exc_text and
        stack_info.  Sets ``message`` and ``asctime`` in ``values``, as
        ``format`` does on the record.
        """
        values["message"] = str(values["msg"])
        if self._uses_time:
            values["asctime"] = self._asctime(values["created"], values["msecs"])
        try:
            text = self._fmt_text % values if self._always_there else self._message(values)
        except (TypeError, ValueError):
            text = self._fill_unrenderable(values)
        exc_text = values["exc_text"]
        if exc_text:
            if text[-1:] != "\n":
                text += "\n"
            text += exc_text
        stack_info = values["stack_info"]
        if stack_info:
            if text[-1:] != "\n":
                text += "\n"
            text += stack_info
        return text

    def _fill_unrenderable(self, values: dict[str, Any]) -> str:
        """The format with the placeholder for each field this record lacks or cannot render.

        A value of a type its conversion refuses (``%(process)d`` of a record
        whose ``process`` is None, an ``extra=`` that is text where the
        format wants a number) is treated as a missing field: the record is
        written, not dead-lettered.  Rare, so tried field by field, uncached.
        """

        def field(match: re.Match[str]) -> str:
            name = match.group("name")
            if name is None:
                return match.group(0)
            try:
                return (match.group(0) % values).replace("%", "%%")
            except KeyError:
                return self._placeholder
            except (TypeError, ValueError) as exc:
                self.unrenderable = f"{match.group(0)}: {type(exc).__name__}: {exc}"
                return self._placeholder

        return _FIELD.sub(field, self._fmt_text) % ()

    def _message(self, values: dict[str, Any]) -> str:
        if values.keys() >= self._fields:
            return self._fmt_text % values
        missing = frozenset(name for name in self._fields if name not in values)
        variant = self._variants.get(missing)
        if variant is None:
            variant = _FIELD.sub(
                lambda m: self._placeholder if m.group("name") in missing else m.group(0), self._fmt_text
            )
            if len(self._variants) < 1024:
                self._variants[missing] = variant
        return variant % values


class LineFormatter:
    """Render entries with a ``logging`` %-style format string."""

    def __init__(self, fmt: str = DEFAULT_FORMAT, *, placeholder: str = "-") -> None:
        try:
            fmt % {m.group("name"): 0 for m in _FIELD.finditer(fmt) if m.group("name") is not None}
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"invalid format string {fmt!r}: {exc}") from exc
        if "%(" not in fmt:
            raise ValueError(f"format string {fmt!r} names no record attribute, e.g. %(message)s")
        self._formatter = _TolerantFormatter(fmt, placeholder)
        self._metadata = _Metadata()
        #: How the C renderer writes this format; None: every entry goes through Python.
        self.plan = text_plan(fmt, placeholder) if text_lines is not None else None

    @property
    def unrenderable(self) -> str | None:
        """The last field a record's value could not render through, and why (None until one could not)."""
        return self._formatter.unrenderable

    def format(self, entry_id: bytes, fields: dict[bytes, bytes]) -> bytes:
        attributes = load_record(record_json(fields))
        if not isinstance(attributes, dict):
            raise EntryError("record is not a JSON object")
        if attributes.keys() >= RECORD_ATTRIBUTES:
            # What makeLogRecord would build, without running LogRecord.__init__
            # only to overwrite everything it sets (a third of the cost).
            record = logging.LogRecord.__new__(logging.LogRecord)
            record.__dict__ = attributes
        else:
            record = logging.makeLogRecord(attributes)
        self._metadata.add_to(record.__dict__, entry_id, fields)
        # The client already merged args into msg; never format it again.
        record.args = None
        text = self._formatter.format(record)
        return text.encode("utf-8", "backslashreplace") + b"\n"

    def format_items(self, items: Sequence[Any]) -> Pieces:
        """The usual entries (the catcher's five fields, maybe seq, a complete record) without a LogRecord or
        ``logging.Formatter.format``; anything else, or anything that fails, is left to :meth:`format`.

        Formats of plain ``%(name)s`` fields are rendered in C from the
        record's JSON (:data:`consumers.read_replies.text_lines`); what it
        leaves, and every other format, by :meth:`format_items_python`.
        tests/consumers/test_formatting.py and test_textlines.py check all
        three write the same.
        """
        if self.plan is None or text_lines is None:
            return self.format_items_python(items)
        formatter = self._formatter
        merged: Pieces = []
        for piece in text_lines(items, self.plan, self._metadata.texts, formatter.second_bytes, None):
            if type(piece) is bytes:
                merged.append(piece)
                continue
            assert isinstance(piece, int)
            (found,) = self.format_items_python([items[piece]])
            merged.append(found if type(found) is bytes else piece)
        return merged

    def format_items_python(self, items: Sequence[Any]) -> Pieces:
        """:meth:`format_items` in Python: a record's dict from orjson, the format applied to it."""
        pieces: Pieces = []
        lines: list[bytes] = []
        loads = orjson.loads
        format_attributes = self._formatter.format_attributes
        needs = self._formatter.needs
        add_metadata = self._metadata.add_values
        for index, item in enumerate(items):
            try:
                entry_id, (v, version, name, record, *metadata) = item
                attributes = loads(record)
                if (
                    v != _VERSION
                    or version != SUPPORTED_SCHEMA
                    or name != _RECORD
                    or type(attributes) is not dict
                    or not attributes.keys() >= needs
                    or attributes["exc_info"]
                ):
                    raise EntryError("not the usual entry")
                add_metadata(attributes, entry_id, metadata)
                attributes["args"] = None
                lines.append(format_attributes(attributes).encode("utf-8", "backslashreplace") + b"\n")
            except Exception:
                if lines:
                    pieces.append(b"".join(lines))
                    lines = []
                pieces.append(index)
        if lines:
            pieces.append(b"".join(lines))
        return pieces


class JsonLineFormatter:
    """One JSON object per line: the record as sent plus ``"logrelay": {...}``."""

    def __init__(self) -> None:
        self._metadata = _Metadata()

    def format_items(self, items: Sequence[Any]) -> Pieces:
        # The usual entries are rendered in C, byte for byte as format() would.
        return json_lines(items, self._metadata.shared_json)

    def format(self, entry_id: bytes, fields: dict[bytes, bytes]) -> bytes:
        record = record_json(fields)
        stripped = record.strip()
        if stripped[:1] != b"{" or stripped[-1:] != b"}":
            raise EntryError("record is not a JSON object")
        if _METADATA_NAME in stripped:
            # The record has an attribute of that name: merge by parsing.
            attributes = load_record(stripped)  # an object: it is {...}
            attributes[METADATA_KEY] = self._metadata.attributes(entry_id, fields)
            try:
                return orjson.dumps(attributes) + b"\n"
            except orjson.JSONEncodeError:
                # Lone surrogates again: the same escapes the catcher wrote.
                encoded = json.dumps(attributes, ensure_ascii=False, separators=(",", ":"))
                return encoded.encode("utf-8", "backslashreplace") + b"\n"
        # A broken record must not become a broken line.  The C check answers
        # for nearly every record without building it; when it is not sure,
        # orjson decides (and words the error).
        if not is_json_object(stripped):
            load_record(stripped)
        metadata = self._metadata.json(entry_id, fields)
        # The record without its closing brace, then the metadata: one copy.
        # An empty object ("{}", "{ }") takes no comma.
        separator = b"," if len(stripped) > 16 or stripped[1:-1].strip() else b""
        return b"".join((memoryview(stripped)[:-1], separator, _METADATA_MEMBER, metadata, b"}\n"))


#: How the C renderer codes the fields that are not record attributes (see _read_replies_lines.c).
_SPECIAL_FIELDS: Final = {"message": -1, "asctime": -2, "client": -3, "catcher": -4, "received": -5, "entry_id": -6}
#: The attributes the renderer always finds, in its order: the message, the
#: time and what format_attributes appends.
_FIXED_KEYS: Final = ("msg", "created", "msecs", "exc_info", "exc_text", "stack_info")
_LITERAL = re.compile(r"(?:[^%]|%%)*")


def text_plan(fmt: str, placeholder: str) -> TextPlan | None:
    """How the C renderer writes ``fmt``, or None if it does not take it.

    It takes formats whose every field is a plain ``%(name)s`` and whose
    other text has no ``%`` but ``%%``; ``%(args)s`` is left to Python (which
    renders it None), and so is everything when logging's millisecond format
    is not the default ``%s,%03d`` (the renderer writes that one itself; the
    text of each second comes from :meth:`_TolerantFormatter.second_bytes`).
    The plan: the format cut into literal text (bytes) and fields (ints: an
    index into the keys, or a negative code for the message, asctime and the
    relay metadata), the record attributes to find
    (the six of :data:`_FIXED_KEYS`, then those of the format: first the
    standard ones, which a record must carry, then extras, which may be
    missing and render as the placeholder), how many are required, and the
    placeholder.
    """
    if _TolerantFormatter.default_msec_format != "%s,%03d":
        return None
    literal_parts: list[str] = []
    fields: list[str] = []
    position = 0
    for match in _FIELD.finditer(fmt):
        if match.group("name") is None:
            continue  # "%%": literal text
        literal_parts.append(fmt[position : match.start()])
        fields.append(match.group("name"))
        if match.group("spec") != "s" or match.group("name") == "args":
            return None
        position = match.end()
    literal_parts.append(fmt[position:])
    if not all(_LITERAL.fullmatch(part) for part in literal_parts):
        return None
    attributes = [name for name in dict.fromkeys(fields) if name not in _SPECIAL_FIELDS and name not in _FIXED_KEYS]
    standard = [name for name in attributes if name in RECORD_ATTRIBUTES]
    extras = [name for name in attributes if name not in RECORD_ATTRIBUTES]
    keys = [*_FIXED_KEYS, *standard, *extras]
    index = {name: n for n, name in enumerate(keys)}
    segments: list[bytes | int] = []
    for literal, name in zip(literal_parts, [*fields, None], strict=True):
        if literal:
            segments.append(literal.replace("%%", "%").encode("utf-8", "backslashreplace"))
        if name is not None:
            segments.append(_SPECIAL_FIELDS[name] if name in _SPECIAL_FIELDS else index[name])
    encoded = tuple(key.encode("utf-8", "backslashreplace") for key in keys)
    return tuple(segments), encoded, len(_FIXED_KEYS) + len(standard), placeholder.encode("utf-8", "backslashreplace")


def build_formatter(spec: str, placeholder: str = "-") -> EntryFormatter:
    """``json`` for JSON lines, anything else is a logging format string."""
    if spec == "json":
        return JsonLineFormatter()
    return LineFormatter(spec, placeholder=placeholder)
