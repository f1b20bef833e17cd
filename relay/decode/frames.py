"""The SocketHandler wire format, decoded without sockets (sans-I/O).

``logging.handlers.SocketHandler.makePickle`` writes each record as a frame:
a 4-byte big-endian unsigned length, then that many bytes of a protocol-1
pickle of the record's ``__dict__``.  :class:`FrameDecoder` is fed whatever
chunks the transport delivers (one byte, half a frame, fifty frames) and
returns, per complete frame, either a :data:`Record` (the record as JSON
bytes) or a :class:`BadFrame` (the raw bytes and why they were refused).

A declared length above ``max_frame_bytes`` but within ``max_skip_bytes``
(a stock ``SocketHandler`` logging a 2 MB record) is not a reason to drop the
sender: the frame is read and discarded as it arrives, never held, and
becomes a :class:`BadFrame` of its first :data:`KEPT_OF_OVERSIZE` bytes and
its size (as an oversize syslog message does); the next frame is decoded as
usual.  A declared length above ``max_skip_bytes`` raises
:class:`FrameTooLarge`: after that the byte stream cannot be trusted (it may
not even be a SocketHandler, ``GET `` reads as 1.2 GB), so the caller closes
the connection.  Everything else that is wrong with a frame is confined to
that frame; the decoder goes on with the next one.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import ClassVar, Final, NamedTuple, TypeAlias, cast

import orjson

from relay.decode.cost_scan import SHARES_OBJECTS
from relay.decode.fast_path import feed_frames, pickle_to_json
from relay.decode.to_json import DecodeLimitExceeded, flat_record_json, to_json_value
from relay.decode.unpickler import UnsafePickle, load_record

__all__ = [
    "BadFrame",
    "DecodeLimits",
    "FrameDecoder",
    "FrameTooLarge",
    "Record",
    "decode_payload",
    "decode_payload_python",
    "exact_size",
]

HEADER_SIZE: Final = 4
#: Bytes of a discarded oversize frame kept in its dead letter.
KEPT_OF_OVERSIZE: Final = 256
EXPANSION_FACTOR: Final = 16
EXPANSION_FLOOR: Final = 64 * 1024
_read_header: Final = struct.Struct(">I").unpack_from
# The stdlib encoder, built once (json.dumps with arguments builds one per
# call), for what orjson refuses: ints beyond 64 bits, lone surrogates.
_encode_json: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds on the work and memory one frame may cost.

    ``max_frame_bytes`` bounds the pickle itself (and so the buffer a
    connection holds); ``max_depth`` and ``max_decoded_bytes`` bound the
    record once decoded, which a small pickle can make large by sharing.
    ``max_skip_bytes`` bounds the frames over ``max_frame_bytes`` that are
    read and discarded rather than closing the connection (they cost reading
    time, not memory).
    """

    max_frame_bytes: int = 1024 * 1024
    max_depth: int = 32
    max_decoded_bytes: int = 4 * 1024 * 1024
    max_skip_bytes: int = 64 * 1024 * 1024

    #: The conversion to JSON recurses a few frames per level; this keeps it
    #: far from Python's recursion limit.
    MAX_DEPTH_LIMIT: ClassVar[int] = 100

    def decoded_budget(self, payload_size: int) -> int:
        """The decoded size one payload may reach.

        An honest record decodes to one or two times its pickle; a pickle that
        shares one object many times can claim far more.  Bounding the budget
        by the payload's own size (16x, plus 64 KiB) keeps the work a small
        frame can cause small, while ``max_decoded_bytes`` caps large ones.
        """
        return min(self.max_decoded_bytes, EXPANSION_FLOOR + EXPANSION_FACTOR * payload_size)

    def __post_init__(self) -> None:
        for name in ("max_frame_bytes", "max_depth", "max_decoded_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_depth > self.MAX_DEPTH_LIMIT:
            raise ValueError(f"max_depth must be at most {self.MAX_DEPTH_LIMIT}")
        if self.max_frame_bytes >= 2**32:
            raise ValueError("max_frame_bytes must be below 4 GiB (the header is 32 bits)")
        if self.max_skip_bytes < self.max_frame_bytes:
            raise ValueError(
                f"max-skip-bytes ({self.max_skip_bytes}) must be at least max-frame-bytes ({self.max_frame_bytes})"
            )


#: A decoded record: its attributes as a UTF-8 JSON object, the bytes
#: themselves (no wrapper object per record: it cost a tenth of decoding,
#: python -m bench.decode).
Record: TypeAlias = bytes


class BadFrame(NamedTuple):
    """A complete frame whose payload is not an acceptable record."""

    raw: bytes
    reason: str


class FrameTooLarge(Exception):
    """A frame header declares more bytes than the limit allows.

    ``events`` holds the frames the same :meth:`FrameDecoder.feed` call
    completed before the bad header: they are valid and must not be lost.
    """

    def __init__(self, size: int, limit: int, events: list[Record | BadFrame] | None = None) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit
        self.events = events or []


def exact_size(encoded: bytes) -> bytes:
    """A copy of orjson's result without its working buffer.

    orjson's bytes keep its whole ~8 KiB buffer whatever the length; records
    wait in the publisher's buffer (measured: 100k records, 866 MB of RSS
    without the copy, 89 MB with it).
    """
    return bytes(memoryview(encoded))


def decode_payload(payload: bytes, limits: DecodeLimits) -> bytes:
    """Turn one frame's pickle into the record's JSON text (UTF-8).

    Raises ``ValueError`` (with a reason fit for a dead-letter entry) if the
    payload is not a pickled ``dict`` with string keys, names a forbidden
    global, is malformed, or exceeds the decoded-size or depth limits.
    """
    budget = limits.decoded_budget(len(payload))
    # Most records never leave C; the rest (and every refusal) take the
    # Python path, which is the reference the C path is tested against.
    text = pickle_to_json(payload, limits.max_depth, budget)
    if text is not None:
        return text
    return decode_payload_python(payload, limits)


def decode_payload_python(payload: bytes, limits: DecodeLimits) -> bytes:
    """:func:`decode_payload` without the C fast path (same contract)."""
    obj, flags, byte_strings = load_record(payload)
    if type(obj) is not dict:
        kind = getattr(type(obj), "qualname", type(obj).__name__).rpartition(".")[2]
        raise ValueError(f"payload is a pickled {kind}, not a record dict")
    budget = limits.decoded_budget(len(payload))
    # Only a tree has JSON bounded by the pickle's size (see flat_record_json).
    # A Python 2 byte string that is not UTF-8 is rendered as bytes: the walk does that.
    if not flags & SHARES_OBJECTS and limits.max_depth >= 1 and not byte_strings:
        flat = flat_record_json(obj, budget)
        if flat is not None:
            return exact_size(flat)
    # An attribute name is text (a Python 2 str that is not UTF-8 is bytes, refused as Python 3's are).
    if any(type(key) is not str or key in byte_strings for key in obj):
        raise ValueError("record dict has non-string keys")
    value = to_json_value(obj, max_depth=limits.max_depth, max_bytes=budget, byte_strings=byte_strings)
    try:
        # orjson, several times the stdlib's speed here (docs/decisions.md).
        return exact_size(orjson.dumps(value))
    except orjson.JSONEncodeError:
        pass
    text = _encode_json(value)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # Lone surrogates (a str pickled from broken input) have no UTF-8
        # form; write them as JSON escapes instead of refusing the record.
        return text.encode("utf-8", "backslashreplace")


def _decode_or_bad_frame(payload: bytes, limits: DecodeLimits) -> Record | BadFrame:
    """A payload the C path left: its record by the Python path, or the bad frame it is."""
    try:
        return decode_payload_python(payload, limits)
    except (ValueError, UnsafePickle, DecodeLimitExceeded) as exc:
        return BadFrame(payload, str(exc))
    except Exception as exc:
        # A decoding path we did not foresee: still one bad frame,
        # never a dead connection that loses its good neighbours.
        return BadFrame(payload, f"undecodable record: {type(exc).__name__}: {exc}")


class FrameDecoder:
    """Incremental decoder for one connection's byte stream.

    Call :meth:`feed` with each chunk received; it returns the records and bad
    frames completed by that chunk, in stream order.  Internally it keeps at
    most one partial frame, never more than ``limits.max_frame_bytes`` plus
    the header; while it discards an oversize frame, only that frame's first
    :data:`KEPT_OF_OVERSIZE` bytes.
    """

    __slots__ = ("_buffer", "_head", "_limits", "_need", "_skip", "_skip_size", "bad_frames_fed")

    def __init__(self, limits: DecodeLimits | None = None) -> None:
        self._limits = limits or DecodeLimits()
        self._buffer = bytearray()
        # Bytes of payload the frame at the head of the buffer needs, once
        # its header has been read; -1 while waiting for a header.
        self._need = -1
        # An oversize frame being discarded: payload bytes still to come, its
        # declared size, and its first bytes until they are in its dead letter
        # (None once it is out).  _skip is 0 otherwise.
        self._skip = 0
        self._skip_size = 0
        self._head: bytearray | None = None
        #: How many of the events the last :meth:`feed` returned are
        #: :class:`BadFrame`: callers skip looking through the usual all-good batch.
        self.bad_frames_fed = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete frame held; 0 means we sit on a frame boundary.

        While an oversize frame is discarded: its header and the first bytes
        kept, never 0 (the connection is inside a frame: frame-timeout
        applies, and a drain does not cut it).
        """
        if self._skip:
            return HEADER_SIZE + (len(self._head) if self._head is not None else 0)
        return len(self._buffer) + (HEADER_SIZE if self._need >= 0 else 0)

    @property
    def frame_bytes(self) -> int:
        """Bytes the incomplete frame will hold once complete, header included (what is held until its header is).

        For an oversize frame being discarded: the most it will hold (its
        header and first bytes), not its size: discarding reserves no more.
        """
        if self._skip:
            return HEADER_SIZE + min(KEPT_OF_OVERSIZE, self._skip_size)
        return HEADER_SIZE + self._need if self._need >= 0 else len(self._buffer)

    @property
    def skipping(self) -> bool:
        """Whether the decoder is inside an oversize frame it discards."""
        return self._skip > 0

    def finish(self) -> list[Record | BadFrame]:
        """The peer closed: an incomplete frame is nothing (none completes at EOF).

        An oversize frame cut short still has its dead letter, if its first
        bytes had not filled it yet.
        """
        head = self._head
        if not self._skip or head is None:
            return []
        self._head = None
        self.bad_frames_fed = 1
        return [self._oversize(bytes(head))]

    def feed(self, data: bytes | memoryview) -> list[Record | BadFrame]:
        """Consume ``data``; return every frame it completes.

        A header declaring more than ``max_frame_bytes`` and at most
        ``max_skip_bytes`` starts discarding that frame (its dead letter is
        among the events once its first bytes are in); more than
        ``max_skip_bytes`` raises :class:`FrameTooLarge` (carrying the
        frames completed before it), and the decoder must not be fed again.
        """
        self.bad_frames_fed = 0
        if self._skip:
            return self._feed_after_discarding(data)
        # The usual case, kept to one call and no list of its own: frames, no oversize header.
        buffer = self._buffer
        buffer += data
        events, oversize = self._frames_in_c(buffer) if feed_frames is not None else self._frames(buffer)
        if oversize < 0:
            return events
        return self._discard_oversize(events, oversize)

    def _feed_after_discarding(self, data: bytes | memoryview) -> list[Record | BadFrame]:
        """:meth:`feed` while an oversize frame is discarded: the rest of it dropped, then what follows decoded."""
        events: list[Record | BadFrame] = []
        rest = self._discard(data, events)
        buffer = self._buffer
        buffer += rest
        found, oversize = self._frames_in_c(buffer) if feed_frames is not None else self._frames(buffer)
        events += found
        if oversize < 0:
            return events
        return self._discard_oversize(events, oversize)

    def _discard_oversize(self, events: list[Record | BadFrame], oversize: int) -> list[Record | BadFrame]:
        """An oversize header leads the buffer, after ``events``: discard its frame (or raise, over the skip cap)."""
        limits = self._limits
        buffer = self._buffer
        while True:
            if oversize > limits.max_skip_bytes:
                raise FrameTooLarge(oversize, limits.max_skip_bytes, events)
            # The oversize header is at the start of the buffer; what follows it is the frame's.
            del buffer[:HEADER_SIZE]
            rest = bytes(buffer)
            buffer.clear()
            self._skip = self._skip_size = oversize
            self._head = bytearray()
            buffer += self._discard(rest, events)
            found, oversize = self._frames_in_c(buffer) if feed_frames is not None else self._frames(buffer)
            events += found
            if oversize < 0:
                return events

    def _discard(self, data: bytes | memoryview, events: list[Record | BadFrame]) -> bytes | memoryview:
        """Drop the oversize frame's bytes from ``data`` (its first ones kept); return what follows the frame.

        Its dead letter goes into ``events`` once its first bytes are in.
        """
        taken = min(self._skip, len(data))
        head = self._head
        if head is not None:
            wanted = min(KEPT_OF_OVERSIZE, self._skip_size) - len(head)
            head += data[: min(wanted, taken)]
            if len(head) == min(KEPT_OF_OVERSIZE, self._skip_size):
                self._head = None
                events.append(self._oversize(bytes(head)))
                self.bad_frames_fed += 1
        self._skip -= taken
        return data[taken:]

    def _oversize(self, head: bytes) -> BadFrame:
        return BadFrame(
            head,
            f"frame of {self._skip_size} bytes exceeds max-frame-bytes ({self._limits.max_frame_bytes}); "
            f"discarded, first bytes kept",
        )

    def _frames(self, buffer: bytearray) -> tuple[list[Record | BadFrame], int]:
        """The complete frames at the start of ``buffer``, decoded, and the size of an oversize header, or -1.

        Deletes the bytes it used.  Stops at an incomplete frame, or at a
        header declaring more than ``max_frame_bytes`` (left at the start of
        the buffer; its size is returned).
        """
        events: list[Record | BadFrame] = []
        offset = 0
        end = len(buffer)
        need = self._need
        limits = self._limits
        max_frame = limits.max_frame_bytes
        max_depth = limits.max_depth
        max_decoded = limits.max_decoded_bytes
        oversize = -1
        while True:
            if need < 0:
                if end - offset < HEADER_SIZE:
                    break
                need = _read_header(buffer, offset)[0]
                if need > max_frame:
                    oversize, need = need, -1
                    break
                offset += HEADER_SIZE
            if end - offset < need:
                break
            payload = bytes(buffer[offset : offset + need])
            offset += need
            # decode_payload, inlined (this loop runs once per record): the C
            # path with limits.decoded_budget(need), then the Python path.
            text = pickle_to_json(payload, max_depth, min(max_decoded, EXPANSION_FLOOR + EXPANSION_FACTOR * need))
            need = -1
            if text is not None:
                events.append(text)
                continue
            event = _decode_or_bad_frame(payload, limits)
            if type(event) is BadFrame:
                self.bad_frames_fed += 1
            events.append(event)
        self._need = need
        if offset:
            del buffer[:offset]
        return events, oversize

    def _frames_in_c(self, buffer: bytearray) -> tuple[list[Record | BadFrame], int]:
        """:meth:`_frames`' loop in C (``feed_frames``): one call per chunk, not a Python round per frame.

        What C leaves (a 1-tuple holding the payload: convert() said None)
        takes the Python path here, in place, as the loop above does.
        """
        assert feed_frames is not None
        limits = self._limits
        found, consumed, self._need, oversize, left = feed_frames(
            buffer,
            self._need,
            limits.max_frame_bytes,
            limits.max_depth,
            limits.max_decoded_bytes,
            EXPANSION_FLOOR,
            EXPANSION_FACTOR,
        )
        if consumed:
            del buffer[:consumed]
        events = cast(list[Record | BadFrame], found)
        if left:
            for index, event in enumerate(found):
                if type(event) is tuple:
                    decoded = events[index] = _decode_or_bad_frame(event[0], limits)
                    if type(decoded) is BadFrame:
                        self.bad_frames_fed += 1
        return events, oversize
