"""Stream entries from the lists of an XREADGROUP or XAUTOCLAIM reply.

The consumer reads replies without redis-py's response callbacks (see
:func:`relay.common.redis_protocol.send_packed`): per entry, the callback that turns
``[id, [field, value, ...]]`` into ``(id, {field: value})`` cost more than
parsing the reply.  :func:`entries` does the same with its loop in C (the
optional extension ``consumers._read_replies``); :func:`entries_python` is
the reference, used where the extension is missing, under
``LOGRELAY_PURE_PYTHON=1``, and for any reply the C loop does not take.

The same extension renders JSON lines straight from a reply's lists
(:func:`json_lines`, for :class:`consumers.formatting.JsonLineFormatter`),
text lines of formats made of plain ``%(name)s`` fields (:data:`text_lines`,
for :class:`consumers.formatting.LineFormatter`; ``_read_replies_lines.c``), and
packs their ids for XACK (:func:`bulk_ids`), and cuts a reply into runs of
one producer's consecutive records (:func:`producer_runs`).  All of these
take a reply's entries either as hiredis's lists or as a :data:`ReplyReader`'s
``ReplyEntries`` (the entries kept in the reply's bytes, ``_read_replies_parser.c``).

The renderers take *the usual entry* (:func:`usual_fields` is its definition in
Python, ``usual_at`` in ``_read_replies.h`` in C): an id of digits and one
dash, and fields exactly ``v``/``1``, ``record``, ``client``, ``catcher``,
``received``, in that order, all bytes, maybe followed by ``seq`` (the
record's identity, :mod:`relay.common.stream`), which no line renders.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

from relay.common import speedups
from relay.common.redis_protocol import bulk_string
from relay.common.stream import SEQ_TOKEN

__all__ = [
    "IMPLEMENTATION",
    "ReplyReader",
    "bulk_ids",
    "check_items",
    "entries",
    "entries_python",
    "identity",
    "json_lines",
    "producer_runs",
    "producer_runs_python",
    "text_lines",
    "usual_fields",
]

Fields = dict[bytes, bytes]
#: Lines of consecutive entries (bytes), or the index of an entry left to the caller (int).
Pieces = list[bytes | int]
MetadataJson = Callable[[bytes, bytes, bytes], bytes]
MetadataTexts = Callable[[bytes, bytes, bytes], tuple[bytes, bytes, bytes]]
#: (segments, keys, required, placeholder): see consumers.formatting.text_plan.
TextPlan = tuple[tuple[bytes | int, ...], tuple[bytes, ...], int, bytes]
#: The record check of the renderers: a callable, or None for the check in C
#: (``_json_scan.h``, the one ``consumers.json_check`` calls), made without a
#: call per record.
RecordCheck = Callable[[bytes], bool] | None
TextLines = Callable[[Sequence[Any], TextPlan, MetadataTexts, Callable[[int], bytes], RecordCheck], Pieces]
#: ``(start, count, token, first_n)``: entries ``start`` to ``start + count - 1``, records of the
#: producer ``token`` numbered ``first_n``, ``first_n + 1``, ...; or (token None, first_n 0) entries
#: without an identity.
Run = tuple[int, int, bytes | None, int]


def entries_python(items: list[Any]) -> list[tuple[bytes, Fields | None]]:
    """``[(id, {field: value}), ...]``; ``(id, None)`` for a pending entry trimmed from the stream.

    Raises ``ValueError`` for an item that is not ``[id, [field, value, ...]]``.
    """
    result: list[tuple[bytes, Fields | None]] = []
    for item in items:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise ValueError(f"unexpected stream entry in a reply: {item!r:.200}")
        entry_id, pairs = item
        if pairs is None:
            result.append((entry_id, None))
            continue
        if not isinstance(pairs, list | tuple) or len(pairs) % 2:
            raise ValueError(f"unexpected fields of stream entry {entry_id!r:.60}: {pairs!r:.200}")
        it = iter(pairs)
        result.append((entry_id, dict(zip(it, it, strict=True))))
    return result


_SHOWN: Final = {
    bytes: "a bulk string",
    str: "a bulk string",
    int: "an integer",
    float: "a double",
    bool: "a boolean",
    dict: "a map",
    set: "a set",
    type(None): "a null",
}


def _shown_as(value: object, text: type = bytes) -> str:
    """What a value hiredis made is, in the words of the C reader's messages (``type_name``)."""
    if type(value) in (bytes, str) and type(value) is not text:
        return f"a bulk string as {type(value).__name__} among {text.__name__}"  # a parser mixing them: never
    if type(value) is list:
        return f"an array of {len(value)} elements"
    if isinstance(value, list):
        return "a push"  # hiredis.PushNotification
    if isinstance(value, Exception):
        return "an error"  # hiredis.ReplyError
    return _SHOWN.get(type(value), f"a {type(value).__name__}")


def check_items(items: list[Any]) -> None:
    """Raise ``ValueError`` unless every item is what Redis 6 and 7 send in a read reply, as a parser made it.

    That is ``[id, [field, value, ...]]`` or ``[id, None]`` (a pending entry
    trimmed from the stream), the id, fields and values all bytes (or all
    str, for a client that decodes replies): the rule the C reader applies to
    a reply's bytes (``check_entry`` in ``_read_replies_parser.c``), for replies
    hiredis read instead.  hiredis gives a RESP3 set or attribute as a list,
    and a simple string, a verbatim string or a big number as bytes, so
    those pass here (as values the renderers and XACK handle); every other
    type Redis never sends in an entry is refused before anything is built
    from it.
    """
    text: type = str if items and type(items[0]) is list and items[0] and type(items[0][0]) is str else bytes
    # The plain loop first (0.3 µs per usual entry, python -m bench.consumer);
    # the message only for a refusal.
    for index, item in enumerate(items):
        if type(item) is not list or len(item) != 2 or type(item[0]) is not text:
            _refuse(index, item, text)
        fields = item[1]
        if fields is None:
            continue
        if type(fields) is not list or len(fields) % 2:
            _refuse(index, item, text)
        for value in fields:
            if type(value) is not text:
                _refuse(index, item, text)


def _refuse(index: int, item: Any, text: type) -> NoReturn:
    """The ``ValueError`` of :func:`check_items` for entry ``index``, worded as the C reader's."""
    head = f"malformed reply from Redis: stream entry {index}"
    if type(item) is not list or len(item) != 2:
        raise ValueError(f"{head}: the entry is {_shown_as(item, text)}; Redis sends an array of 2 (id, fields) there")
    entry_id, fields = item
    if type(entry_id) is not text:
        raise ValueError(f"{head}: its id is {_shown_as(entry_id, text)}; Redis sends a bulk string there")
    if type(fields) is not list or len(fields) % 2:
        wanted = "an array of field-value pairs, or a null"
        raise ValueError(f"{head}: its field list is {_shown_as(fields, text)}; Redis sends {wanted} there")
    field = next(k for k, value in enumerate(fields) if type(value) is not text)
    shown = _shown_as(fields[field], text)
    raise ValueError(f"{head}: element {field} of its field list is {shown}; Redis sends a bulk string there")


#: The usual entry's field names at their places (None: a value), without and with ``seq``.
_USUAL_NAMES: Final = (b"v", b"1", b"record", None, b"client", None, b"catcher", None, b"received", None)
_USUAL_NAMES_WITH_SEQ: Final = (*_USUAL_NAMES, b"seq", None)
_STREAM_ID: Final = re.compile(rb"[0-9]+-[0-9]+")
#: A record's identity, ``TOKEN:N`` (relay.common.stream): 16 lowercase hex digits, then N from 1, at most
#: 18 digits (so that N, and N + 1, fit in 63 bits, as in C).
_IDENTITY: Final = re.compile(rb"(" + SEQ_TOKEN.encode() + rb"):([1-9][0-9]{0,17})")


def usual_fields(item: Any) -> list[bytes] | None:
    """The field list of ``item`` if it is the usual entry (``usual_at`` of ``_read_replies.h``), else None.

    Ten fields (no ``seq``: written before record identities, or replayed
    from the dead letters) or twelve (``seq`` and its value, any bytes, last).
    Only exact types count, as in C: a list ``[id, [field, value, ...]]`` of
    bytes (a reply a client decoded to str is never usual), the id digits,
    one dash, digits.
    """
    if type(item) is not list or len(item) != 2:
        return None
    entry_id, fields = item
    if type(entry_id) is not bytes or _STREAM_ID.fullmatch(entry_id) is None or type(fields) is not list:
        return None
    names = _USUAL_NAMES if len(fields) == 10 else _USUAL_NAMES_WITH_SEQ if len(fields) == 12 else None
    if names is None:
        return None
    for name, field in zip(names, fields, strict=True):
        if type(field) is not bytes or (name is not None and field != name):
            return None
    return fields


def identity(seq: bytes) -> tuple[bytes, int] | None:
    """``(TOKEN, N)`` of a ``seq`` value exactly ``TOKEN:N`` (relay.common.stream); None for anything else."""
    found = _IDENTITY.fullmatch(seq)
    return (found[1], int(found[2])) if found is not None else None


def producer_runs_python(items: Sequence[Any]) -> list[Run]:
    """The entries in runs, in order, covering them all, each as ``(start, count, token, first_n)``.

    An entry has an identity when it is usual (:func:`usual_fields`) with a
    ``seq`` of the form ``TOKEN:N`` (:func:`identity`); a malformed value is
    no identity, never an error.  Consecutive entries of one token numbered
    n, n + 1, ... make one run (``token`` the 16 bytes of TOKEN, ``first_n``
    the first's N); consecutive entries without an identity make one run
    ``(start, count, None, 0)``.  A new token, a gap or a step back in N, or
    an entry with(out) an identity after one without (with) starts a new run.
    No items, no runs.
    """
    runs: list[Run] = []
    start = 0
    token: bytes | None = None
    first_n = next_n = 0
    for index, item in enumerate(items):
        fields = usual_fields(item)
        found = identity(fields[11]) if fields is not None and len(fields) == 12 else None
        entry_token, n = found if found is not None else (None, 0)
        if index > 0:
            goes_on = entry_token is None if token is None else entry_token == token and n == next_n
            if goes_on:
                next_n = n + 1
                continue
            runs.append((start, index - start, token, first_n))
        start, token, first_n, next_n = index, entry_token, n, n + 1
    if len(items):
        runs.append((start, len(items) - start, token, first_n))
    return runs


def json_lines_python(items: Sequence[Any], metadata: MetadataJson) -> Pieces:
    """Where the extension is missing: every entry is left to the caller's formatter."""
    return list(range(len(items)))


def bulk_ids_python(items: Sequence[Any]) -> bytes:
    """Each entry's id as a RESP bulk string, concatenated (the arguments of an XACK)."""
    return b"".join(bulk_string(item[0]) for item in items)


def _load() -> Any:
    return speedups.load("consumers._read_replies")


_extension: Final = _load()
_convert: Final[Callable[[list[Any]], list[tuple[bytes, Fields | None]] | None] | None] = (
    _extension.entries if _extension is not None else None
)

#: "c", or "python" where only the Python loop exists.
IMPLEMENTATION: Final = "c" if _extension is not None else "python"

#: ``ReplyReader()``: ``feed(data)`` gives None until a reply's bytes are
#: whole, then ``(kind, value)``: ``(0, ReplyEntries)``, ``(1, None)`` (nil),
#: ``(2, message)`` (an error reply), ``(3, raw)`` (any other reply); a
#: ``ValueError`` for bytes that are not RESP or an entry that is not what
#: Redis sends.  None where the extension is missing (hiredis then reads the
#: replies, :func:`check_items` their entries);
#: :class:`consumers.reply_parser.ReplyReaderPython` is its reference.
ReplyReader: Final[Any] = _extension.ReplyReader if _extension is not None else None

#: ``json_lines(items, metadata)``: the JSON lines of a reply's
#: usual entries, byte for byte what ``JsonLineFormatter.format`` writes,
#: and the index of every other entry (see ``_read_replies.c``).
#: ``metadata(client, catcher, received)`` gives the ``logrelay`` object
#: without its closing brace.  Records are checked in C (``_json_scan.h``,
#: the check ``consumers.json_check`` calls).
json_lines: Final[Callable[[Sequence[Any], MetadataJson], Pieces]] = (
    _extension.json_lines if _extension is not None else json_lines_python
)


#: ``text_lines(items, plan, metadata, second_text, is_object)``: the text
#: lines of a reply's usual entries, byte for byte what
#: ``LineFormatter.format_items`` writes, and the index of every other entry
#: (see ``_read_replies_lines.c``); None where the extension is missing.
text_lines: Final[TextLines | None] = _extension.text_lines if _extension is not None else None


def entries(items: list[Any]) -> list[tuple[bytes, Fields | None]]:
    """:func:`entries_python`, with the loop in C when the reply has the usual shape."""
    if _convert is not None:
        converted = _convert(items)
        if converted is not None:
            return converted
    return entries_python(items)


def producer_runs(items: Sequence[Any]) -> list[Run]:
    """:func:`producer_runs_python`, in C (one pass, an object per run) for a list or a ``ReplyEntries``."""
    if _extension is not None and (type(items) is list or type(items) is _extension.ReplyEntries):
        runs: list[Run] = _extension.producer_runs(items)
        return runs
    return producer_runs_python(items)


def bulk_ids(items: Sequence[Any]) -> bytes:
    """:func:`bulk_ids_python`, in C when every item is ``[bytes id, ...]``."""
    if _extension is not None:
        packed: bytes | None = _extension.bulk_ids(items)
        if packed is not None:
            return packed
    return bulk_ids_python(items)
