"""Stream entries as a catcher writes them and as a read reply carries them, for the consumer tests."""

from __future__ import annotations

import logging
import logging.handlers

from consumers.formatting import EntryFormatter
from relay.decode.frames import FrameDecoder, Record

__all__ = ["all_at_once", "entry_for", "make_record", "one_by_one", "reply_item"]


def entry_for(record: logging.LogRecord, client: bytes = b"10.1.2.3:4000") -> dict[bytes, bytes]:
    """The stream entry a catcher makes of ``record`` (through the real decoder)."""
    frame = logging.handlers.SocketHandler("unused", 0).makePickle(record)
    (event,) = FrameDecoder().feed(frame)
    assert isinstance(event, Record)
    return {b"v": b"1", b"record": event, b"client": client, b"catcher": b"c1", b"received": b"1700000000.5"}


def make_record(msg: str = "hello %s", args: tuple[object, ...] = ("world",), **extra: object) -> logging.LogRecord:
    """A WARNING record of "app.web", with ``extra`` attributes."""
    record = logging.LogRecord("app.web", logging.WARNING, "/srv/app/web.py", 7, msg, args, None, func="handle")
    record.__dict__.update(extra)
    return record


def reply_item(entry_id: bytes, fields: dict[bytes, bytes]) -> list[object]:
    """An entry as the reply parser gives it: [id, [field, value, ...]], fields in the catcher's order."""
    return [entry_id, [part for pair in fields.items() for part in pair]]


def one_by_one(formatter: EntryFormatter, items: list[list[object]]) -> list[bytes]:
    """What format() makes of each entry (or the error it raises), the reference for format_items."""
    lines = []
    for entry_id, flat in items:
        assert isinstance(entry_id, bytes)
        assert isinstance(flat, list)
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        try:
            # Split at newlines only, as all_at_once does: a record may hold a
            # bare \r as JSON whitespace, which splitlines() would split at.
            lines += [line + b"\n" for line in formatter.format(entry_id, fields).split(b"\n")[:-1]]
        except Exception as exc:
            lines.append(f"error: {type(exc).__name__}: {exc}\n".encode())
    return lines


def all_at_once(formatter: EntryFormatter, items: list[list[object]]) -> list[bytes]:
    """format_items, its left-over entries filled in by format() as the consumer does."""
    pieces = formatter.format_items(items)
    lines: list[bytes] = []
    for piece in pieces:
        if isinstance(piece, bytes):
            lines += [line + b"\n" for line in piece.split(b"\n")[:-1]]
        else:
            lines += one_by_one(formatter, [items[piece]])
    return lines
