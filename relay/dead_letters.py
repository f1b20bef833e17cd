"""Dead letters: reading them page by page, telling the catcher's from the consumers', and replaying them.

The dead-letter stream (``{STREAM}:dead``, docs/stream-format.md) holds two
kinds of entries:

* **catcher** letters, a frame the catcher refused: ``v, reason, raw, client,
  catcher, received``; ``raw`` is the frame's pickle (its payload, without
  the 4-byte length header).  Replaying one decodes ``raw`` again through the
  catcher's own decoder (:class:`relay.decode.frames.FrameDecoder`), under the
  limits given, and writes the record entry the catcher would have written,
  with the letter's client, catcher and received time.
* **consumer** letters, an entry a consumer could not render (or gave up
  on): the entry's own fields, then ``reason, entry_id, group``.  Replaying
  one writes its record fields back, as they were.

Each replay is one call of :mod:`relay.publish.replay`'s script, which
removes the letter and adds the entry atomically, and adds nothing if the
letter is gone: exactly once, however often a replay runs.

This module sits beside :mod:`relay.server`: above the decoder and the
publisher, which it joins, and below the CLI (import contracts in
pyproject.toml).  Nothing here reads more than one page (:data:`PAGE_SIZE`
entries) of the stream at a time.
"""

from __future__ import annotations

import enum
import re
import secrets
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, NamedTuple, TypeAlias, cast

from redis.asyncio import Redis

from relay.common import stream
from relay.common.stream import RECORD_FIELDS_WITHOUT_SEQ, SCHEMA_VERSION, StreamKeys
from relay.decode.frames import BadFrame, DecodeLimits, FrameDecoder, FrameTooLarge
from relay.publish.replay import ReplayOutcome, replay_entry

__all__ = [
    "PAGE_SIZE",
    "DeadLetter",
    "Kind",
    "ReplayResult",
    "dead_letters",
    "decode_frame",
    "delete_range",
    "fetch",
    "last_id",
    "parse_before",
    "record_fields",
    "replay",
    "valid_id",
]

#: Entries read (and deleted) per Redis call: bounds the memory of any command over the whole stream.  Redis
#: returns a letter whole (even to tell its size): at the catcher's default frame limit (1 MiB), a page is ~20 MiB.
PAGE_SIZE: Final = 20

_ENTRY_ID = re.compile(r"^\d+-\d+$")
_ID_OR_MILLISECONDS = re.compile(r"^\d+(-\d+)?$")
_header: Final = struct.Struct(">I").pack


#: Each part of a stream id is a 64-bit unsigned number.
_ID_PART_LIMIT: Final = 1 << 64
#: The exclusive end before every entry: nothing is before it (Redis refuses it as an end).
_BEFORE_EVERYTHING: Final = "(0-0"


def _parts_in_range(text: str) -> bool:
    return all(int(part) < _ID_PART_LIMIT for part in text.split("-"))


def valid_id(text: str) -> bool:
    """Whether ``text`` is a whole stream entry id (``1700000000000-0``), each part a 64-bit number."""
    return bool(_ENTRY_ID.match(text)) and _parts_in_range(text)


class Kind(enum.StrEnum):
    """Who wrote a dead letter."""

    CATCHER = "catcher"  # a frame the catcher refused (it has ``raw``)
    CONSUMER = "consumer"  # an entry a consumer could not render (it has ``entry_id`` and ``group``)
    UNKNOWN = "unknown"  # neither: never replayed


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "backslashreplace")


def iso_time(received: str) -> str:
    """``received`` (Unix seconds as text) as UTC ISO 8601 (``2023-11-14T22:13:20.500000Z``), else as it is."""
    try:
        moment = datetime.fromtimestamp(float(received), UTC)
    except (ValueError, OverflowError, OSError):
        return received
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of the dead-letter stream, as read (fields in the order Redis keeps them)."""

    id: str
    fields: dict[bytes, bytes]

    def field(self, name: str) -> bytes | None:
        return self.fields.get(name.encode())

    @property
    def kind(self) -> Kind:
        if self.field(stream.RAW) is not None:
            return Kind.CATCHER
        if self.field(stream.ENTRY_ID) is not None and self.field(stream.GROUP) is not None:
            return Kind.CONSUMER
        return Kind.UNKNOWN

    @property
    def reason(self) -> str:
        return _text(self.field(stream.REASON))

    @property
    def client(self) -> str:
        return _text(self.field(stream.CLIENT))

    @property
    def received(self) -> str:
        return _text(self.field(stream.RECEIVED))

    @property
    def time(self) -> str:
        """When the catcher received it, UTC ISO 8601."""
        return iso_time(self.received)

    @property
    def payload(self) -> bytes:
        """What was refused: the frame's pickle (catcher), the entry's record (consumer)."""
        name = stream.RAW if self.kind is Kind.CATCHER else stream.RECORD
        return self.field(name) or b""

    @property
    def size(self) -> int:
        return len(self.payload)

    def summary(self) -> dict[str, str | int]:
        """What ``dead-letters list --json`` shows of it."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "reason": self.reason,
            "client": self.client,
            "time": self.time,
            "received": self.received,
            "size": self.size,
        }


#: An XRANGE reply, as redis-py gives it without decoding (its annotations allow str and None too).
_Entries: TypeAlias = list[tuple[bytes, dict[bytes, bytes]]]


async def _xrange(redis: Redis, key: str, start: str, end: str, count: int, *, reverse: bool = False) -> _Entries:
    if reverse:
        return cast(_Entries, await redis.xrevrange(key, end, start, count=count))
    return cast(_Entries, await redis.xrange(key, start, end, count=count))


def _letters(reply: _Entries) -> list[DeadLetter]:
    return [DeadLetter(entry_id.decode(), fields) for entry_id, fields in reply]


async def fetch(redis: Redis, key: str, letter_id: str) -> DeadLetter | None:
    """The dead letter ``letter_id``, or None if there is none."""
    if not valid_id(letter_id):
        raise ValueError(f"not a dead letter id: {letter_id!r} (ids look like 1700000000000-0)")
    found = _letters(await _xrange(redis, key, letter_id, letter_id, 1))
    return found[0] if found else None


async def last_id(redis: Redis, key: str) -> str | None:
    """The newest dead letter's id: where a command over "all" of them stops, whatever arrives meanwhile."""
    found = await _xrange(redis, key, "-", "+", 1, reverse=True)
    return found[0][0].decode() if found else None


async def dead_letters(
    redis: Redis, key: str, *, end: str = "+", limit: int | None = None
) -> AsyncIterator[DeadLetter]:
    """The dead letters from the oldest up to ``end`` (inclusive; ``(ID``: exclusive), ``limit`` at most.

    Read :data:`PAGE_SIZE` at a time; each page starts after the last id of
    the one before, so deleting what was read (a replay) does not disturb it.
    """
    start = "-"
    left = limit
    while left is None or left > 0:
        count = PAGE_SIZE if left is None else min(PAGE_SIZE, left)
        page = _letters(await _xrange(redis, key, start, end, count))
        for letter in page:
            yield letter
        if len(page) < count:
            return
        if left is not None:
            left -= len(page)
        start = "(" + page[-1].id


def parse_before(text: str) -> str:
    """``purge --before``: an entry id, or a UTC time (ISO 8601), as an exclusive XRANGE end (``(ID``).

    A time means the letters written to the dead-letter stream before it
    (an entry's id is its arrival time in milliseconds).  Raises ``ValueError``.
    """
    if _ID_OR_MILLISECONDS.match(text):
        if not _parts_in_range(text):
            raise ValueError(f"not a dead letter id: {text!r} (each part at most {_ID_PART_LIMIT - 1})")
        return "(" + (text if "-" in text else text + "-0")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a dead letter id or an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"({max(0, int(moment.timestamp() * 1000))}-0"


async def delete_range(redis: Redis, key: str, end: str) -> int:
    """Delete the dead letters from the oldest up to ``end`` (as :func:`dead_letters`), a page per call; how many."""
    deleted = 0
    if end == _BEFORE_EVERYTHING:
        return 0  # before the first possible id (or 1970): nothing
    while True:
        page = await _xrange(redis, key, "-", end, PAGE_SIZE)
        if not page:
            return deleted
        deleted += int(await redis.xdel(key, *(entry_id for entry_id, _ in page)))


class Refused(NamedTuple):
    """A letter that cannot be replayed (yet): why."""

    reason: str


def decode_frame(raw: bytes, limits: DecodeLimits) -> bytes | Refused:
    """``raw`` (a frame's pickle) through the catcher's decoder: the record's JSON, or why it is refused.

    The same :class:`FrameDecoder` the catcher feeds, given the frame as it
    came off the socket (length header and pickle), so the record is byte for
    byte what the catcher would have published under ``limits``.
    """
    try:
        (event,) = FrameDecoder(limits).feed(_header(len(raw)) + raw)
    except FrameTooLarge as exc:
        return Refused(f"{exc} (max-frame-bytes)")
    if isinstance(event, BadFrame):
        return Refused(event.reason)
    return event


def record_fields(letter: DeadLetter, limits: DecodeLimits) -> list[tuple[str, bytes]] | Refused:
    """The record entry replaying ``letter`` writes, field by field in the schema's order; or why it cannot."""
    kind = letter.kind
    if kind is Kind.CATCHER:
        version = _text(letter.field(stream.VERSION))
        if version != SCHEMA_VERSION:
            return Refused(f"dead letter of schema version {version!r}, not {SCHEMA_VERSION}")
        record = decode_frame(letter.field(stream.RAW) or b"", limits)
        if isinstance(record, Refused):
            return record
        # The catcher's entry: its schema, the record decoded now, the rest as the letter kept it.
        values = {name: letter.field(name) or b"" for name in RECORD_FIELDS_WITHOUT_SEQ}
        values[stream.VERSION] = SCHEMA_VERSION.encode()
        values[stream.RECORD] = record
        return [(name, values[name]) for name in RECORD_FIELDS_WITHOUT_SEQ]
    if kind is Kind.CONSUMER:
        # As it was: a consumer decides again whether it can render it.
        if letter.field(stream.RECORD) is None:
            return Refused("the consumer's dead letter holds no record field")
        return [(name, value) for name in RECORD_FIELDS_WITHOUT_SEQ if (value := letter.field(name)) is not None]
    return Refused("neither a refused frame (raw) nor a consumer's entry (entry_id, group)")


class ReplayResult(NamedTuple):
    """What became of one letter: ``outcome`` is ``replayed``, ``refused``, ``gone``, ``full`` or ``would replay``."""

    letter: DeadLetter
    outcome: str
    reason: str = ""


async def replay(
    redis: Redis,
    keys: StreamKeys,
    letters: AsyncIterator[DeadLetter],
    limits: DecodeLimits,
    *,
    max_length: int = 0,
    dry_run: bool = False,
) -> AsyncIterator[ReplayResult]:
    """Replay each of ``letters``, in turn; yield what became of it.

    A letter that still cannot be replayed stays where it is (``refused``);
    one another replay or a purge removed first is ``gone`` (nothing added);
    ``full``: the records stream is at ``max_length`` (the letter stays; the
    caller should stop).  ``dry_run`` decodes but writes nothing.
    """
    # The replayed records' identity (relay.common.stream): a token of this
    # replay, numbered in the order it writes them.  Never the letter's own
    # (a consumer letter's): the file may hold later records of its catcher.
    token = secrets.token_hex(8)
    number = 0
    async for letter in letters:
        fields = record_fields(letter, limits)
        if isinstance(fields, Refused):
            yield ReplayResult(letter, "refused", fields.reason)
            continue
        if dry_run:
            yield ReplayResult(letter, "would replay")
            continue
        number += 1
        identity = (stream.SEQ, f"{token}:{number}".encode())
        outcome = await replay_entry(redis, keys, letter.id.encode(), [*fields, identity], max_length=max_length)
        if outcome is ReplayOutcome.REPLAYED:
            yield ReplayResult(letter, "replayed")
        elif outcome is ReplayOutcome.GONE:
            yield ReplayResult(letter, "gone", "no longer in the dead-letter stream (replayed or purged meanwhile)")
        else:
            yield ReplayResult(letter, "full", f"the records stream holds --max-stream-length {max_length} entries")
