"""The reference of ``ReplyReader`` (``_read_replies_parser.c``) in Python: one read reply from Redis's bytes.

:class:`ReplyReaderPython` has the C reader's contract, step for step, so
that the two can be compared on any bytes cut at any places
(tests/consumers/test_reply_parser.py, ``tests/fuzz/consumer.py``):
``feed(data)`` gives None until a reply's bytes are whole, then
``(kind, value)``:

- ``(0, entries)``: an XREADGROUP/XREAD reply of one stream (RESP2 or RESP3);
  its entries, ``[id, [field, value, ...]]`` or ``[id, None]`` (where the C
  reader gives a ``ReplyEntries`` holding the same items);
- ``(1, None)``: a nil reply (a BLOCK that timed out);
- ``(2, message)``: an error reply's message, without its ``-``;
- ``(3, raw)``: any other complete reply, as it came, for a general parser.

``ValueError`` for bytes that are not RESP, for bytes past the reply, and
for an entry that is not what Redis 6 and 7 send, the same messages as the C
reader's: an entry is an array of 2, its id a bulk string, its fields an
array of an even count of bulk strings or a null (``*-1`` in RESP2, ``_`` in
RESP3; given as None).  RESP3 pushes and attributes before the reply are
skipped.  The consumer uses the C reader; without it, redis-py reads
replies with hiredis (:meth:`consumers.group_reader.GroupReader._read`), which is
faster than this: 0.44 µs per usual entry against 13 µs here (0.085 for the
C reader; ad hoc timing of a 1,000-entry reply).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["ENTRIES", "ERROR", "NIL", "OTHER", "ReplyReaderPython"]

ENTRIES: Final = 0
NIL: Final = 1
ERROR: Final = 2
OTHER: Final = 3

# What the scanning helpers return besides a position (positions are >= 0).
_INCOMPLETE: Final = -1
_MALFORMED: Final = -2

#: Deepest nesting of a reply resp_skip follows; XREADGROUP's is 4.
MAX_DEPTH: Final = 16
#: No length Redis sends has more than 12 digits.
_HEADER_DIGITS: Final = 12

_CR, _LF, _MINUS = 13, 10, 45
_LINE_TYPES: Final = frozenset(b"+-:_,#(")
_BULK_TYPES: Final = frozenset(b"$=!")
_AGGREGATE_TYPES: Final = frozenset(b"*~>%|")

_TYPE_NAMES: Final = {
    ord("*"): "an array",
    ord("$"): "a bulk string",
    ord("~"): "a set",
    ord("%"): "a map",
    ord("|"): "an attribute",
    ord(">"): "a push",
    ord(","): "a double",
    ord("("): "a big number",
    ord("#"): "a boolean",
    ord("="): "a verbatim string",
    ord("!"): "a blob error",
    ord("_"): "a null",
    ord(":"): "an integer",
    ord("+"): "a simple string",
    ord("-"): "an error",
}

# Where in an entry the check stopped, as the message names it, and what Redis sends there.
_POS_ENTRY, _POS_ID, _POS_FIELDS, _POS_FIELD = range(4)
_WHERE: Final = ("the entry", "its id", "its field list")  # and "element N of its field list"
_EXPECTED: Final = (
    "an array of 2 (id, fields)",
    "a bulk string",
    "an array of field-value pairs, or a null",
    "a bulk string",
)

_AT_HEAD, _AT_ENTRIES, _AT_OTHER, _DONE = range(4)


_FAULT_TYPE, _FAULT_HEADER, _FAULT_LENGTH, _FAULT_BULK_END = range(4)


class _EntryFault(Exception):
    """An entry is not what Redis sends (``EntryFault``): where, how, and the element's type byte and length."""

    def __init__(self, position: int, field: int, fault: int, kind: int, length: int = 0) -> None:
        super().__init__(position, field, fault, kind, length)
        self.position, self.field, self.fault, self.kind, self.length = position, field, fault, kind, length


def _read_integer(data: bytearray, p: int, end: int, max_digits: int) -> tuple[int, int]:
    """The integer of the line at ``p`` (its first byte is the type): (position past its CRLF, value).

    The position is ``_INCOMPLETE`` or ``_MALFORMED`` (value 0) as
    ``read_integer`` decides: too many digits is malformed at once, a line
    without two bytes after its digits is incomplete.
    """
    q = p + 1
    negative = q < end and data[q] == _MINUS
    if negative:
        q += 1
    n = digits = 0
    while q < end and 48 <= data[q] <= 57:
        digits += 1
        if digits > max_digits:
            return _MALFORMED, 0
        n = n * 10 + data[q] - 48
        q += 1
    if end - q < 2:
        return _INCOMPLETE, 0
    if digits == 0 or data[q] != _CR or data[q + 1] != _LF:
        return _MALFORMED, 0
    return q + 2, -n if negative else n


def _read_header(data: bytearray, p: int, end: int) -> tuple[int, int]:
    return _read_integer(data, p, end, _HEADER_DIGITS)


def _skip_line(data: bytearray, p: int, end: int) -> int:
    """Past a line-valued element (``+OK``, ``:12``, ``-ERR ...``)."""
    nl = data.find(b"\n", p, end)
    if nl < 0:
        return _INCOMPLETE
    if nl == p or data[nl - 1] != _CR:
        return _MALFORMED
    return nl + 1


def _resp_skip(data: bytearray, p: int, end: int, depth: int) -> int:
    """Past one RESP2 or RESP3 element at ``p`` (any type: pushes, the stream's name, other replies)."""
    if p >= end:
        return _INCOMPLETE
    kind = data[p]
    if kind in _BULK_TYPES:
        q, n = _read_header(data, p, end)
        if q < 0:
            return q
        if n < 0:
            return q if n == -1 and kind == ord("$") else _MALFORMED
        if end - q < n + 2:
            return _INCOMPLETE
        if data[q + n] != _CR or data[q + n + 1] != _LF:
            return _MALFORMED
        return q + n + 2
    if kind in _AGGREGATE_TYPES:
        q, n = _read_header(data, p, end)
        if q < 0:
            return q
        if n < 0:
            return q if n == -1 and kind == ord("*") else _MALFORMED
        if depth >= MAX_DEPTH:
            return _MALFORMED
        if kind in b"%|":
            n *= 2
        for _ in range(n):
            q = _resp_skip(data, q, end, depth + 1)
            if q < 0:
                return q
        return q
    if kind in _LINE_TYPES:
        return _skip_line(data, p, end)
    return _MALFORMED


def _check_bulk(data: bytearray, p: int, end: int, position: int, field: int) -> tuple[int, bytes]:
    """The bulk string at ``p`` (``check_bulk``): (position past it, its bytes), or (``_INCOMPLETE``, b"")."""
    if p >= end:
        return _INCOMPLETE, b""
    if data[p] != ord("$"):
        raise _EntryFault(position, field, _FAULT_TYPE, data[p])
    q, n = _read_header(data, p, end)
    if q == _INCOMPLETE:
        return q, b""
    if q == _MALFORMED:
        raise _EntryFault(position, field, _FAULT_HEADER, ord("$"))
    if n < 0:
        raise _EntryFault(position, field, _FAULT_LENGTH, ord("$"), n)
    if end - q < n + 2:
        return _INCOMPLETE, b""
    if data[q + n] != _CR or data[q + n + 1] != _LF:
        raise _EntryFault(position, field, _FAULT_BULK_END, ord("$"), n)
    return q + n + 2, bytes(data[q : q + n])


def _check_entry(data: bytearray, p: int, end: int) -> tuple[int, list[Any] | None]:
    """The entry at ``p`` as Redis sends it (``check_entry``): (position past it, ``[id, fields]``).

    ``(_INCOMPLETE, None)`` if the bytes end before it does; an
    :class:`_EntryFault` as soon as a byte shows it is anything else.
    """
    if p >= end:
        return _INCOMPLETE, None
    if data[p] != ord("*"):
        raise _EntryFault(_POS_ENTRY, 0, _FAULT_TYPE, data[p])
    q, n = _read_header(data, p, end)
    if q == _INCOMPLETE:
        return q, None
    if q == _MALFORMED:
        raise _EntryFault(_POS_ENTRY, 0, _FAULT_HEADER, ord("*"))
    if n != 2:
        raise _EntryFault(_POS_ENTRY, 0, _FAULT_LENGTH, ord("*"), n)
    q, entry_id = _check_bulk(data, q, end, _POS_ID, 0)
    if q < 0:
        return q, None
    if q >= end:
        return _INCOMPLETE, None
    if data[q] == ord("_"):  # RESP3's null: exactly "_\r\n"
        if end - q < 3:
            return _INCOMPLETE, None
        if data[q + 1] != _CR or data[q + 2] != _LF:
            raise _EntryFault(_POS_FIELDS, 0, _FAULT_HEADER, ord("_"))
        return q + 3, [entry_id, None]
    if data[q] != ord("*"):
        raise _EntryFault(_POS_FIELDS, 0, _FAULT_TYPE, data[q])
    q, n = _read_header(data, q, end)
    if q == _INCOMPLETE:
        return q, None
    if q == _MALFORMED:
        raise _EntryFault(_POS_FIELDS, 0, _FAULT_HEADER, ord("*"))
    if n == -1:  # RESP2's null array
        return q, [entry_id, None]
    if n < 0 or n % 2:
        raise _EntryFault(_POS_FIELDS, 0, _FAULT_LENGTH, ord("*"), n)
    fields: list[bytes] = []
    for field in range(n):
        q, value = _check_bulk(data, q, end, _POS_FIELD, field)
        if q < 0:
            return q, None
        fields.append(value)
    return q, [entry_id, fields]


def _entry_message(index: int, fault: _EntryFault) -> str:
    """The C reader's message (``entry_malformed``): entry ``index`` is not what Redis sends."""
    head = f"malformed reply from Redis: stream entry {index}"
    place = f"element {fault.field} of its field list" if fault.position == _POS_FIELD else _WHERE[fault.position]
    if fault.fault == _FAULT_HEADER:
        return f"{head}: {place} has a malformed header ('{chr(fault.kind)}')"
    if fault.fault == _FAULT_BULK_END:
        return f"{head}: {place} does not end where its length says"
    if fault.fault == _FAULT_LENGTH:
        if fault.length == -1:
            what = "a null array" if fault.kind == ord("*") else "a null bulk string"
        elif fault.kind == ord("*"):
            what = f"an array of {fault.length} elements"
        else:
            what = f"a bulk string of length {fault.length}"
    else:
        name = _TYPE_NAMES.get(fault.kind)
        what = f"{name} ('{chr(fault.kind)}')" if name is not None else f"the byte {fault.kind:#x}, no RESP type"
    return f"{head}: {place} is {what}; Redis sends {_EXPECTED[fault.position]} there"


class ReplyReaderPython:
    """One reply from Redis's bytes, fed in any chunks: the contract of the module docstring.

    A reader reads one reply: a ``feed`` after the result raises
    ``ValueError``.  After a ``ValueError`` the reader is spent (the caller
    drops the connection, as with the C reader).
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self._stage = _AT_HEAD
        self._position = 0  # _AT_ENTRIES: where the next entry starts
        self._announced = 0  # _AT_ENTRIES: how many entries the reply holds
        self._entries: list[list[Any]] = []

    def feed(self, data: bytes | bytearray | memoryview) -> tuple[int, Any] | None:
        if self._stage == _DONE:
            raise ValueError("ReplyReader: the reply was read already")
        self._data += data
        if not self._data:
            return None
        if self._stage == _AT_HEAD:
            found = self._read_head()
            if found is not None or self._stage == _AT_HEAD:
                return found
        if self._stage == _AT_ENTRIES:
            return self._read_entries()
        q = _resp_skip(self._data, 0, len(self._data), 0)
        if q == _INCOMPLETE:
            return None
        if q == _MALFORMED:
            raise ValueError("malformed reply from Redis: not RESP")
        self._ends_at(q)
        return OTHER, bytes(self._data)

    def _ends_at(self, q: int) -> None:
        """The reply ended at ``q``: nothing else was asked, so no byte may follow."""
        if q != len(self._data):
            raise ValueError("malformed reply from Redis: bytes after the reply")
        self._stage = _DONE

    def _read_head(self) -> tuple[int, Any] | None:
        """What the reply is: a result, or None with the stage set (or left at the head: more bytes needed)."""
        data = self._data
        p, end = 0, len(data)
        # RESP3 pushes and attributes come out of band, before a reply: skipped.
        while p < end and data[p] in b">|":
            q = _resp_skip(data, p, end, 0)
            if q == _INCOMPLETE:
                break
            if q == _MALFORMED:
                raise ValueError("malformed reply from Redis: push")
            p = q
        if p > 0:
            del data[:p]
            p, end = 0, len(data)
        if p == end or data[p] in b">|":
            return None
        kind = data[p]
        if kind == ord("-"):
            q = _skip_line(data, p, end)
            if q == _INCOMPLETE:
                return None
            if q == _MALFORMED:
                raise ValueError("malformed reply from Redis: error reply")
            self._ends_at(q)
            return ERROR, bytes(data[p + 1 : q - 2])
        if kind == ord("_"):
            q = _skip_line(data, p, end)
            if q == _INCOMPLETE:
                return None
            if q == _MALFORMED or q != p + 3:
                raise ValueError("malformed reply from Redis: null")
            self._ends_at(q)
            return NIL, None
        if kind in b"*%":
            if kind == ord("*"):
                q, n = _read_header(data, p, end)
                if q == _INCOMPLETE:
                    return None
                if q != _MALFORMED and n == -1:
                    self._ends_at(q)
                    return NIL, None
            q, count = self._entries_header(p, end)
            if q == _INCOMPLETE:
                return None
            if q != _MALFORMED:
                self._stage = _AT_ENTRIES
                self._position = q
                self._announced = count
                return None
        self._stage = _AT_OTHER
        return None

    def _entries_header(self, p: int, end: int) -> tuple[int, int]:
        """``*1 *2 $name *count`` (RESP2) or ``%1 $name *count`` (RESP3) at ``p``: (first entry, count)."""
        data = self._data
        q, n = _read_header(data, p, end)
        if q < 0:
            return q, 0
        if n != 1:
            return _MALFORMED, 0
        if data[p] == ord("*"):
            if q >= end:
                return _INCOMPLETE, 0
            if data[q] != ord("*"):
                return _MALFORMED, 0
            q, n = _read_header(data, q, end)
            if q < 0:
                return q, 0
            if n != 2:
                return _MALFORMED, 0
        q = _resp_skip(data, q, end, 2)  # the stream's name
        if q < 0:
            return q, 0
        if q >= end:
            return _INCOMPLETE, 0
        if data[q] != ord("*"):
            return _MALFORMED, 0
        q, count = _read_header(data, q, end)
        if q < 0:
            return q, 0
        return (_MALFORMED, 0) if count < 0 else (q, count)

    def _read_entries(self) -> tuple[int, Any] | None:
        data = self._data
        end = len(data)
        while len(self._entries) < self._announced:
            p = self._position
            try:
                q, entry = _check_entry(data, p, end)
            except _EntryFault as fault:
                raise ValueError(_entry_message(len(self._entries), fault)) from None
            if q == _INCOMPLETE:
                return None
            assert entry is not None
            self._entries.append(entry)
            self._position = q
        self._ends_at(self._position)
        entries, self._entries = self._entries, []
        self._data = bytearray()
        return ENTRIES, entries
