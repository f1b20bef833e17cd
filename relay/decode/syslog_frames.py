"""Syslog over a byte stream (TCP, TLS): RFC 6587 framing, sans-I/O.

:class:`SyslogStreamDecoder` is fed a connection's bytes and returns the
records (and dead letters) of the messages they complete, with the interface
of :class:`relay.decode.frames.FrameDecoder`, so that the catcher's
connection code (limits, PROXY header, TLS, flow control) serves both.

Framing is told apart per message, as rsyslog does: a message that starts
with digits, a space and ``<`` (a PRI) is octet-counted (``LEN SP MSG``, RFC 6587 §3.4.1,
what RFC 5425 TLS senders and ``logger --octet-count`` use); any other ends
at a LF or a NUL (non-transparent framing, §3.4.2: ``logger`` without
``--octet-count`` ends with LF, the stdlib's ``SysLogHandler`` with NUL).

A message longer than ``max_frame_bytes`` is not a reason to drop a good
sender: its first bytes and its size become a dead letter, the rest of it
is read and discarded, and the connection goes on with the next message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Final

from relay.decode.frames import BadFrame, DecodeLimits, Record
from relay.decode.syslog_message import syslog_record

__all__ = ["SyslogStreamDecoder"]

#: The most digits an octet count may have (beyond it the message is taken as LF-framed).
MAX_COUNT_DIGITS: Final = 10
#: Bytes of an oversize message kept in its dead letter.
KEPT_OF_OVERSIZE: Final = 256
_TERMINATOR: Final = re.compile(rb"[\n\x00]")
# A line that starts with a digit may be an octet count's: the loop of feed tells.
_DIGIT_AFTER_LF: Final = re.compile(rb"\n[0-9]")


class SyslogStreamDecoder:
    """A TCP syslog connection's bytes in, records out (see the module docstring)."""

    __slots__ = (
        "_buffer",
        "_clock",
        "_discarding",
        "_limit",
        "_need",
        "_nul_framed",
        "_searched",
        "_skip",
        "bad_frames_fed",
    )

    def __init__(self, limits: DecodeLimits | None = None, *, clock: Callable[[], float] = time.time) -> None:
        """``clock``: the receive time of a message without a timestamp of its own."""
        self._clock = clock
        self._limit = (limits or DecodeLimits()).max_frame_bytes
        self._buffer = bytearray()
        self._skip = 0  # bytes of an oversize octet-counted message still to discard
        self._discarding = False  # inside an oversize LF-framed message: discard up to its terminator
        self._need = 0  # the octet-counted message being received: its whole size with the count
        self._searched = 0  # bytes of the held line already searched for its terminator (none there)
        self._nul_framed = False  # the sender ends messages with NUL alone (SysLogHandler): LF is content
        self.bad_frames_fed = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete message held (0: on a message boundary)."""
        return len(self._buffer)

    @property
    def frame_bytes(self) -> int:
        """The size of the message being received, as far as it is known."""
        return max(self._need, len(self._buffer))

    def feed(self, data: bytes | memoryview) -> list[Record | BadFrame]:
        """Take bytes; return the messages they complete, in order."""
        self.bad_frames_fed = 0
        if self._skip or self._discarding:
            data = self._discard(data)
        buffer = self._buffer
        buffer += data
        events: list[Record | BadFrame] = []
        received = self._clock()
        at, size = self._whole_lines(buffer, received, events), len(buffer)
        while at < size:
            if 0x30 <= buffer[at] <= 0x39:
                space = buffer.find(b" ", at, at + MAX_COUNT_DIGITS + 1)
                if space > at and space + 1 == size and buffer[at:space].isdigit():
                    break  # is it a count? the byte after the space tells
                # A counted message is a SYSLOG-MSG, which starts with its PRI: "2024 was a year" is a line.
                if space > at and space + 1 < size and buffer[space + 1] == 0x3C and buffer[at:space].isdigit():
                    count = int(buffer[at:space])
                    start, end = space + 1, space + 1 + count
                    if count > self._limit:
                        events.append(self._oversize(bytes(buffer[start : start + KEPT_OF_OVERSIZE]), count))
                        self._skip = max(0, end - size)
                        at = min(end, size)
                        continue
                    if end > size:
                        self._need = end - at
                        break
                    events.append(self._message(bytes(buffer[start:end]), received))
                    at = end
                    continue
                if space < 0 and size - at <= MAX_COUNT_DIGITS and buffer[at:size].isdigit():
                    break  # an octet count still arriving
            # A line held from earlier reads is not searched again (a long line in small reads was quadratic).
            end = self._line_end(buffer, at + self._searched if at == 0 else at, size)
            if end < 0:
                if size - at > self._limit:
                    events.append(self._oversize(bytes(buffer[at : at + KEPT_OF_OVERSIZE]), size - at, counted=False))
                    self._discarding = True
                    at = size
                break
            self._searched = 0
            if end - at > self._limit:
                events.append(self._oversize(bytes(buffer[at : at + KEPT_OF_OVERSIZE]), end - at))
            elif end > at:  # an empty line between messages is no message
                events.append(self._message(bytes(buffer[at:end]), received))
            at = end + 1
        del buffer[:at]
        # What is held now starts at 0, and none of it holds a terminator unless it waits as a count.
        self._searched = len(buffer) if buffer and not self._need else 0
        if not buffer:
            self._need = 0
        return events

    def _whole_lines(self, buffer: bytearray, received: float, events: list[Record | BadFrame]) -> int:
        """The usual read of an LF-framed sender, every complete line at once; how many bytes it took.

        What the loop of :meth:`feed` would make of them, for a fraction of
        its cost per message: taken only when nothing in the read needs the
        loop's care (a NUL, a line that may be octet-counted, a line over the
        limit); 0 otherwise, and the loop does it all.
        """
        if self._nul_framed or not buffer or 0x30 <= buffer[0] <= 0x39:
            return 0
        # The held line's first _searched bytes have no LF and no NUL: only what came since is searched.
        last = buffer.rfind(b"\n", self._searched)
        if last < 0 or buffer.find(b"\x00", self._searched) >= 0:
            return 0
        chunk = bytes(buffer[:last])
        if _DIGIT_AFTER_LF.search(chunk) is not None:
            return 0
        lines = chunk.split(b"\n")
        if max(map(len, lines)) > self._limit:
            return 0
        found = [syslog_record(line, received) for line in lines if line]
        bad = sum(type(event) is BadFrame for event in found)
        if bad:
            self.bad_frames_fed += bad
        events += found
        self._searched = 0
        return last + 1

    def _line_end(self, buffer: bytearray, start: int, size: int) -> int:
        """Where the line-framed message being read ends (its LF or NUL), from ``start``; -1: not yet.

        ``SysLogHandler`` ends each message with a NUL, and a message of
        several lines (a traceback) holds LFs: on such a connection an LF is
        content.  A connection is taken to frame with NUL once a message ended
        with one, or once an LF is followed, in what has arrived, by more text
        that is not a new message (``<PRI>``) and then by a NUL.
        """
        if self._nul_framed:
            return buffer.find(b"\x00", start)
        found = _TERMINATOR.search(buffer, start)
        if found is None:
            return -1
        end = found.start()
        if buffer[end] == 0:
            self._nul_framed = True
            return end
        after = end + 1
        if after < size and buffer[after] != 0x3C and buffer[after] != 0x0A:
            nul = buffer.find(b"\x00", after)
            if nul >= 0:
                following = buffer.find(b"\n<", after, nul)
                if following < 0:  # one message of several lines, ended by its NUL
                    self._nul_framed = True
                    return nul
        return end

    def finish(self) -> list[Record | BadFrame]:
        """The peer closed: an unterminated last message is complete; a partial octet-counted one is not."""
        buffer, self._buffer = self._buffer, bytearray()
        self._searched = 0
        if not buffer or self._need or self._discarding:
            return []
        self.bad_frames_fed = 0
        return [self._message(bytes(buffer), self._clock())]

    def _message(self, message: bytes, received: float) -> Record | BadFrame:
        event = syslog_record(message, received)
        if type(event) is BadFrame:
            self.bad_frames_fed += 1
        return event

    def _oversize(self, head: bytes, size: int, *, counted: bool = True) -> BadFrame:
        self.bad_frames_fed += 1
        what = f"{size} bytes" if counted else f"over {size} bytes without a terminator"
        return BadFrame(head, f"syslog message of {what} exceeds max-frame-bytes ({self._limit}); first bytes kept")

    def _discard(self, data: bytes | memoryview) -> bytes | memoryview:
        """Drop the rest of an oversize message from ``data``; return what follows it."""
        if self._skip:
            taken = min(self._skip, len(data))
            self._skip -= taken
            return data[taken:]
        end = bytes(data).find(b"\x00") if self._nul_framed else _first_terminator(data)
        if end < 0:
            return b""
        self._discarding = False
        return data[end + 1 :]


def _first_terminator(data: bytes | memoryview) -> int:
    found = _TERMINATOR.search(data)
    return -1 if found is None else found.start()
