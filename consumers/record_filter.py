"""Which records a reader of the stream wants: a level, logger names, a pattern in the message (sans-I/O).

:class:`RecordFilter` decides on a record's attributes as the catcher stored
them (the ``record`` field's JSON object, see relay.common.stream), before
anything is rendered, so that ``logrelay tail`` formats only what it prints.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["RecordFilter", "message_text", "parse_level", "record_level"]

#: Level names a user may give (any case) and records may carry: logging's own, with WARN and FATAL.
_LEVELS: Final = {name.lower(): number for name, number in logging.getLevelNamesMapping().items()}


def parse_level(text: str) -> int:
    """A level as a user writes it: a name (``debug``, ``INFO``, ``warning``, ``error``, ``critical``) or a number.

    Raises ``ValueError`` for anything else, naming what is accepted.
    """
    cleaned = text.strip()
    if cleaned.isdigit():
        return int(cleaned)
    try:
        return _LEVELS[cleaned.lower()]
    except KeyError:
        raise ValueError(f"unknown level {text!r} (debug, info, warning, error, critical, or a number)") from None


def record_level(record: Mapping[str, Any]) -> int | None:
    """The record's level number: ``levelno``, else what its ``levelname`` names; None if it has neither."""
    number = record.get("levelno")
    if isinstance(number, int) and not isinstance(number, bool):
        return number
    name = record.get("levelname")
    if isinstance(name, str):
        return _LEVELS.get(name.lower())
    return None


#: A %-conversion: mapping key, flags, width, precision, length modifier, type.
_CONVERSION: Final = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?.", re.DOTALL)
#: The most characters ``msg % args`` may make for a filter; beyond it the message is matched as sent.
MAX_MERGED_CHARS: Final = 4 << 20


def _merge_is_small(msg: str, values: Any) -> bool:
    """Whether ``msg % values`` surely makes at most :data:`MAX_MERGED_CHARS` characters.

    A sender chooses both: a width (``%2147483647d``), a ``*`` width, or one
    long mapping value named again and again (``%(a)s%(a)s...``) would make
    gigabytes of a record of a few bytes.  Each conversion is counted at its
    width or precision, plus the longest argument's text, plus the digits a
    float can print.
    """
    conversions = _CONVERSION.findall(msg)
    widest = 0
    for width, precision in conversions:
        if "*" in (width, precision) or len(width) > 4 or len(precision) > 4:
            return False
        widest = max(widest, int(width or 0), int(precision or 0))
    items = values.values() if isinstance(values, dict) else values if isinstance(values, tuple) else (values,)
    longest = max((len(ascii(item)) for item in items), default=0)
    return len(msg) + len(conversions) * (widest + longest + 400) <= MAX_MERGED_CHARS


def message_text(record: Mapping[str, Any]) -> str:
    """The record's message as ``LogRecord.getMessage`` would give it.

    A stock SocketHandler sends ``msg`` already merged with its arguments
    (``args`` null), which is what the formatters print; a client that sent
    ``args`` gets ``msg % args`` when that works.  A record without ``msg``
    falls back to a ``message`` attribute, then to the empty string.
    """
    if "msg" not in record:
        message = record.get("message")
        return "" if message is None else str(message)
    msg = record["msg"]
    text = str(msg)
    args = record.get("args")
    if args and isinstance(msg, str):
        # JSON turned the tuple into a list; a single mapping argument stays an object.
        values = tuple(args) if isinstance(args, list) else args
        if not _merge_is_small(msg, values):
            return text  # "%2147483647d" and its kind: gigabytes from a few bytes; as sent
        # A format its arguments do not fit: the message as sent, as the formatters print it.
        with contextlib.suppress(TypeError, ValueError, KeyError):
            text = msg % values
    return text


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """A conjunction of optional conditions on a record; the default matches every record.

    * ``level``: the record's level is this number or above (a record with no
      level never matches a level condition);
    * ``loggers``: the record's logger is one of these names or below one of
      them (``app.db`` takes ``app.db`` and ``app.db.pool``, not ``app.dbx``);
    * ``pattern``: ``pattern.search`` finds it in the record's message
      (:func:`message_text`).
    """

    level: int | None = None
    loggers: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None

    @classmethod
    def build(cls, *, level: int | None = None, loggers: Iterable[str] = (), grep: str | None = None) -> RecordFilter:
        """A filter from user input; the regular expression is compiled here, once.

        Raises ``ValueError`` for a pattern ``re`` refuses.  Trailing dots of
        a logger name are dropped (``app.`` is ``app``); an empty name, the
        whole tree, drops the logger condition.
        """
        names = tuple(dict.fromkeys(name.rstrip(".") for name in loggers))
        if "" in names:
            names = ()
        pattern = None
        if grep is not None:
            try:
                pattern = re.compile(grep)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {grep!r}: {exc}") from None
        return cls(level=level, loggers=names, pattern=pattern)

    @property
    def matches_everything(self) -> bool:
        return self.level is None and not self.loggers and self.pattern is None

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Does ``record`` (a record's attributes, as the catcher stored them) meet every condition?"""
        if self.level is not None:
            level = record_level(record)
            if level is None or level < self.level:
                return False
        if self.loggers:
            name = record.get("name")
            if not isinstance(name, str) or not any(
                name == prefix or name.startswith(prefix + ".") for prefix in self.loggers
            ):
                return False
        return self.pattern is None or self.pattern.search(message_text(record)) is not None
