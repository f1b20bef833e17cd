"""Stream entries from the lists of an XREADGROUP or XAUTOCLAIM reply.

The consumer reads replies without redis-py's response callbacks (see
:func:`relay.connections.send_packed`): per entry, the callback that turns
``[id, [field, value, ...]]`` into ``(id, {field: value})`` cost more than
parsing the reply.  :func:`entries` does the same with its loop in C (the
optional extension ``consumers._stream_entries``); :func:`entries_python` is
the reference, used where the extension is missing, under
``LOGRELAY_PURE_PYTHON=1``, and for any reply the C loop does not take.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final

__all__ = ["IMPLEMENTATION", "entries", "entries_python"]

Fields = dict[bytes, bytes]


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


def _load() -> Callable[[list[Any]], list[tuple[bytes, Fields | None]] | None] | None:
    if os.environ.get("LOGRELAY_PURE_PYTHON"):
        return None
    try:
        from consumers import _stream_entries  # type: ignore[attr-defined]
    except ImportError:
        return None
    convert: Callable[[list[Any]], list[tuple[bytes, Fields | None]] | None] = _stream_entries.entries
    return convert


_convert: Final = _load()

#: "c", or "none" where only the Python loop exists.
IMPLEMENTATION: Final = "c" if _convert is not None else "none"


def entries(items: list[Any]) -> list[tuple[bytes, Fields | None]]:
    """:func:`entries_python`, with the loop in C when the reply has the usual shape."""
    if _convert is not None:
        converted = _convert(items)
        if converted is not None:
            return converted
    return entries_python(items)
