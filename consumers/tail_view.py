"""What ``logrelay tail`` makes of stream entries: filtered, rendered lines, newest N oldest-first (sans-I/O).

:class:`TailView` turns one entry into a :class:`TailLine` (the text the file
consumer would write for it, with the record's level for colouring), nothing
(filtered out), or an :class:`Unrenderable` note; it never raises, so one bad
entry never ends a tail.  :class:`NewestCollector` takes pages of entries read
newest-first and keeps the newest N that match, to be printed oldest-first.
:func:`previous_id` gives the id just below an entry's, where the next older
page ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from consumers.formatting import EntryFormatter, load_record, record_json
from consumers.record_filter import RecordFilter, record_level

__all__ = ["NewestCollector", "TailLine", "TailView", "Unrenderable", "previous_id"]

#: The largest sequence number of a stream id.
_MAX_SEQUENCE: Final = 2**64 - 1


@dataclass(frozen=True, slots=True)
class TailLine:
    """A matching entry, rendered: ``text`` is one or more complete lines (a traceback follows its line)."""

    entry_id: bytes
    text: bytes
    level: int | None


@dataclass(frozen=True, slots=True)
class Unrenderable:
    """An entry that cannot be read or rendered, and why (one line)."""

    entry_id: bytes
    reason: str

    def note(self) -> str:
        return f"entry {self.entry_id.decode('ascii', 'replace')} skipped: {self.reason}"


Outcome = TailLine | Unrenderable
Entry = tuple[bytes, dict[bytes, bytes]]


class TailView:
    """Filter, then render, one entry at a time with the file consumer's formatter (so lines match the file's)."""

    def __init__(self, formatter: EntryFormatter, record_filter: RecordFilter) -> None:
        self._formatter = formatter
        self._filter = record_filter

    def render(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Outcome | None:
        """The entry's line, None if the filter leaves it out, or :class:`Unrenderable`.

        An entry of another schema version or with a broken record is
        unrenderable whatever the filter says: what it holds is unknown.
        """
        try:
            record = self._record(fields)
            if not self._filter.matches(record):
                return None
            text = self._formatter.format(entry_id, fields)
        except Exception as exc:  # a tail shows what it can and goes on, whatever one entry holds
            return Unrenderable(entry_id, str(exc) or type(exc).__name__)
        return TailLine(entry_id, text, record_level(record))

    @staticmethod
    def _record(fields: dict[bytes, bytes]) -> dict[str, Any]:
        record = load_record(record_json(fields))
        if not isinstance(record, dict):
            raise ValueError("record is not a JSON object")
        return record


class NewestCollector:
    """The newest ``wanted`` matching entries, from pages read newest-first.

    Unrenderable entries met on the way are kept in their place (they do not
    count towards ``wanted``).  Once ``wanted`` lines are found, the rest of
    the page (older entries) is left alone.
    """

    def __init__(self, view: TailView, wanted: int) -> None:
        self._view = view
        self.wanted = wanted
        self.found = 0
        self.scanned = 0
        self._newest_first: list[Outcome] = []

    @property
    def done(self) -> bool:
        return self.found >= self.wanted

    def add_page(self, page: Sequence[Entry]) -> bool:
        """Take the next (older) page, newest entry first; return True once enough lines are found."""
        for entry_id, fields in page:
            if self.done:
                break
            self.scanned += 1
            outcome = self._view.render(entry_id, fields)
            if outcome is None:
                continue
            self._newest_first.append(outcome)
            if isinstance(outcome, TailLine):
                self.found += 1
        return self.done

    def oldest_first(self) -> list[Outcome]:
        return self._newest_first[::-1]


def previous_id(entry_id: bytes) -> bytes | None:
    """The largest stream id below ``entry_id`` (``5-0`` gives ``4-18446744073709551615``); None below ``0-0``.

    Works on every Redis version (the exclusive ``(id`` range bound needs 6.2).
    """
    milliseconds, _, sequence = entry_id.partition(b"-")
    ms, seq = int(milliseconds), int(sequence or b"0")
    if seq > 0:
        return b"%d-%d" % (ms, seq - 1)
    if ms > 0:
        return b"%d-%d" % (ms - 1, _MAX_SEQUENCE)
    return None
