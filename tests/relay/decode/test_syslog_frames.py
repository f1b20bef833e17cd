"""SyslogStreamDecoder: RFC 6587 framing of a TCP syslog connection, fed bytes without sockets."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.decode import syslog_frames
from relay.decode.frames import BadFrame, DecodeLimits
from relay.decode.syslog_frames import KEPT_OF_OVERSIZE, SyslogStreamDecoder

M5424 = b'<13>1 2026-12-07T01:27:35.779669+00:00 vm app5 10313 ID47 [ex@32473 k="v"] hello 5424'
M3164 = b"<131>Dec  7 01:27:35 vm myapp: hello 3164"


def octets(message: bytes) -> bytes:
    return b"%d %s" % (len(message), message)


def messages(events: list[Any]) -> list[str]:
    return [orjson.loads(event)["msg"] if not isinstance(event, BadFrame) else event for event in events]


def feed_all(decoder: SyslogStreamDecoder, data: bytes, step: int) -> list[Any]:
    events: list[Any] = []
    for at in range(0, len(data), step):
        events += decoder.feed(data[at : at + step])
    return events


# Every framing a sender uses, back to back: octet counting (logger --octet-count, RFC 5425),
# LF (logger), CRLF, an empty line, a message that starts with digits.
STREAM = (
    octets(M5424)
    + M3164
    + b"\n"
    + b"<14>crlf line\r\n"
    + b"\n"
    + octets(b"<13>1 - - - - - - 42 apples")
    + b"2024 was a year\n"
)
EXPECTED = ["hello 5424", "hello 3164", "crlf line", "42 apples", "2024 was a year"]
# SysLogHandler over TCP: each message ends with a NUL, a traceback's lines inside one.
NUL_STREAM = b"<14>pyapp: from SysLogHandler\x00<11>pyapp: failed\nTraceback: ...\nValueError\x00<14>pyapp: last\x00"
NUL_EXPECTED = ["from SysLogHandler", "failed\nTraceback: ...\nValueError", "last"]


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, len(STREAM)])
def test_every_framing_in_one_stream_however_it_is_split(step: int) -> None:
    decoder = SyslogStreamDecoder()
    assert messages(feed_all(decoder, STREAM, step)) == EXPECTED
    assert decoder.pending_bytes == 0
    nul_framed = SyslogStreamDecoder()
    assert messages(feed_all(nul_framed, NUL_STREAM, step)) == NUL_EXPECTED


def test_a_partial_message_is_held_and_its_size_known_when_counted() -> None:
    decoder = SyslogStreamDecoder()
    framed = octets(M5424)
    assert decoder.feed(framed[:20]) == []
    assert decoder.pending_bytes == 20
    assert decoder.frame_bytes == len(framed)
    assert messages(decoder.feed(framed[20:])) == ["hello 5424"]
    assert (decoder.pending_bytes, decoder.frame_bytes) == (0, 0)


def test_at_eof_an_unterminated_message_is_complete_but_a_partial_counted_one_is_not() -> None:
    decoder = SyslogStreamDecoder()
    assert decoder.feed(b"<13>app: last words") == []
    assert messages(decoder.finish()) == ["last words"]
    counted = SyslogStreamDecoder()
    assert counted.feed(octets(M5424)[:-3]) == []
    assert counted.finish() == []


def test_an_oversize_counted_message_is_a_dead_letter_and_the_connection_goes_on() -> None:
    limits = DecodeLimits(max_frame_bytes=1000)
    decoder = SyslogStreamDecoder(limits)
    big = b"<13>app: " + b"x" * 5000
    data = octets(b"<13>app: before") + octets(big) + octets(b"<13>app: after")
    events = feed_all(decoder, data, 333)
    assert messages([e for e in events if not isinstance(e, BadFrame)]) == ["before", "after"]
    (letter,) = [e for e in events if isinstance(e, BadFrame)]
    assert letter.raw == big[:KEPT_OF_OVERSIZE]
    assert "5009 bytes exceeds max-frame-bytes (1000)" in letter.reason


def test_an_oversize_unterminated_message_is_a_dead_letter_up_to_its_terminator() -> None:
    decoder = SyslogStreamDecoder(DecodeLimits(max_frame_bytes=1000))
    data = b"<13>app: before\n<13>app: " + b"y" * 5000 + b"\n<13>app: after\n"
    events = feed_all(decoder, data, 400)
    assert messages([e for e in events if not isinstance(e, BadFrame)]) == ["before", "after"]
    (letter,) = [e for e in events if isinstance(e, BadFrame)]
    assert letter.raw.startswith(b"<13>app: yyy")
    assert len(letter.raw) == KEPT_OF_OVERSIZE
    assert "without a terminator exceeds max-frame-bytes" in letter.reason
    assert decoder.pending_bytes == 0


def test_the_held_bytes_never_exceed_the_limit_much() -> None:
    decoder = SyslogStreamDecoder(DecodeLimits(max_frame_bytes=1000))
    for _ in range(100):
        decoder.feed(b"z" * 700)  # a sender that never ends its line
        assert decoder.pending_bytes <= 1000 + 700


def test_a_malformed_message_is_a_dead_letter_and_counted_as_fed() -> None:
    decoder = SyslogStreamDecoder()
    events = decoder.feed(b"<999>bad\n<13>app: good\n")
    assert decoder.bad_frames_fed == 1
    assert isinstance(events[0], BadFrame)
    assert events[0].raw == b"<999>bad"
    assert messages(events[1:]) == ["good"]


def test_a_byte_beyond_ascii_in_a_timestamp_is_a_dead_letter_not_a_dropped_connection() -> None:
    # It raised UnicodeDecodeError out of feed: the connection closed, the records read with it lost.
    decoder = SyslogStreamDecoder()
    events = decoder.feed(b"<13>1 - h a - - - before\n<13>1 2024\xff h a - - - bad\n<13>1 - h a - - - after\n")
    assert decoder.bad_frames_fed == 1
    assert messages([events[0], events[2]]) == ["before", "after"]
    assert isinstance(events[1], BadFrame)
    assert events[1].raw == b"<13>1 2024\xff h a - - - bad"


def test_digits_that_are_not_a_count_are_a_line() -> None:
    decoder = SyslogStreamDecoder()
    assert messages(decoder.feed(b"12345678901234 digits first\n")) == ["12345678901234 digits first"]


@pytest.mark.parametrize("head", [b"1a ", b"2024-01-01 ", b"7- "])
def test_a_line_starting_with_a_digit_split_after_its_first_space(head: bytes) -> None:
    # The byte after the space was read before checking there was one: IndexError, the connection cut.
    decoder = SyslogStreamDecoder()
    assert messages(decoder.feed(b"<13>app: before\n" + head)) == ["before"]
    assert messages(decoder.feed(b"rest of the line\n")) == [(head + b"rest of the line").decode()]


def test_a_long_line_fed_in_small_reads_is_scanned_once() -> None:
    # Each read searched the whole held line again for its terminator: quadratic in the line.
    decoder = SyslogStreamDecoder()
    searched = 0
    real_search = syslog_frames._TERMINATOR.search

    class Counting:
        def search(self, data: Any, pos: int = 0) -> Any:
            nonlocal searched
            searched += len(data) - pos
            return real_search(data, pos)

    original = syslog_frames._TERMINATOR
    syslog_frames._TERMINATOR = Counting()  # type: ignore[assignment]
    try:
        for _ in range(1000):
            decoder.feed(b"x" * 100)
        assert messages(decoder.feed(b"\n")) == ["x" * 100_000]
    finally:
        syslog_frames._TERMINATOR = original
    assert searched <= 2 * 100_001


def test_an_oversize_line_with_its_terminator_in_the_same_read_is_a_dead_letter() -> None:
    # Only a line still without its terminator was measured: up to max-frame-bytes plus a read passed whole.
    decoder = SyslogStreamDecoder(DecodeLimits(max_frame_bytes=1000))
    events = decoder.feed(b"<13>app: " + b"y" * 5000 + b"\n<13>app: after\n")
    assert messages([e for e in events if not isinstance(e, BadFrame)]) == ["after"]
    (letter,) = [e for e in events if isinstance(e, BadFrame)]
    assert len(letter.raw) == KEPT_OF_OVERSIZE
    assert "exceeds max-frame-bytes (1000)" in letter.reason


def test_a_multi_line_message_from_sysloghandler_over_tcp_is_one_record() -> None:
    text = 'failed\nTraceback (most recent call last):\n  File "app.py", line 3\nZeroDivisionError: division by zero'
    decoder = SyslogStreamDecoder()
    events = decoder.feed(b"<11>" + text.encode() + b"\x00<14>next\x00")
    assert messages(events) == [text, "next"]


def test_once_a_connection_ended_a_message_with_nul_an_lf_is_content_whatever_the_reads() -> None:
    decoder = SyslogStreamDecoder()
    assert messages(decoder.feed(b"<14>first\x00")) == ["first"]
    traceback = b'<11>boom\nTraceback (most recent call last):\n  File "x.py", line 1\nValueError: v\n'
    events: list[Any] = []
    for at in range(0, len(traceback), 7):  # however the message is cut, the LFs inside it end nothing
        events += decoder.feed(traceback[at : at + 7])
    events += decoder.feed(b"\x00")
    assert messages(events) == [traceback[4:].decode().rstrip("\n")]


def test_lf_framing_and_lines_without_a_pri_still_end_at_each_lf() -> None:
    decoder = SyslogStreamDecoder()
    assert messages(decoder.feed(b"<13>app: one\n<13>app: two\nplain line\nanother\n")) == [
        "one",
        "two",
        "plain line",
        "another",
    ]


class OneAtATime(SyslogStreamDecoder):
    """The decoder without its whole-lines shortcut: every message through the loop of feed."""

    __slots__ = ()

    def _whole_lines(self, buffer: bytearray, received: float, events: list[Any]) -> int:
        return 0


PIECES = [
    M5424 + b"\n",
    M3164 + b"\n",
    b"<14>crlf line\r\n",
    b"\n",
    b"\r\n",
    b"plain line without a pri\n",
    b"2024 was a year\n",
    octets(M5424),
    octets(b"<13>1 - - - - - - 42 apples"),
    b"<14>pyapp: ended by a NUL\x00",
    b"<11>pyapp: failed\nTraceback: ...\nValueError\x00",
    b"<999>a bad pri\n",
    b"<13>app: " + b"x" * 300 + b"\n",  # over the limit below
    b"<13>1 2026-12-07T01:27:35Z h a - - [broken\n",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), max_size=30),
    st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=10),
)
def test_the_whole_lines_shortcut_gives_what_the_loop_gives(pieces: list[bytes], cuts: list[int]) -> None:
    data = b"".join(pieces)
    limits = DecodeLimits(max_frame_bytes=200)
    # A message without a timestamp gets the receive time: the same for both.
    fast, slow = SyslogStreamDecoder(limits, clock=lambda: 1.5e9), OneAtATime(limits, clock=lambda: 1.5e9)
    got: list[list[Any]] = [[], []]
    at, n = 0, 0
    while at < len(data):
        step = cuts[n % len(cuts)]
        for decoder, events in ((fast, got[0]), (slow, got[1])):
            found = decoder.feed(data[at : at + step])
            assert decoder.bad_frames_fed == sum(isinstance(e, BadFrame) for e in found)
            events.extend(_comparable(e) for e in found)
        at, n = at + step, n + 1
    got[0].extend(_comparable(e) for e in fast.finish())
    got[1].extend(_comparable(e) for e in slow.finish())
    assert got[0] == got[1]


def _comparable(event: Any) -> Any:
    return event if isinstance(event, BadFrame) else orjson.loads(event)
