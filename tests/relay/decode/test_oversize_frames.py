"""FrameDecoder discarding frames over max-frame-bytes (up to max-skip-bytes), fed in arbitrary splits; no sockets."""

from __future__ import annotations

import itertools
import json
import logging
import logging.handlers

import hypothesis
import pytest
from hypothesis import strategies as st

from relay.decode.frames import KEPT_OF_OVERSIZE, BadFrame, DecodeLimits, FrameDecoder, FrameTooLarge, Record

MAX_FRAME = 2000  # a record of the strategy below is under 1,000 bytes
MAX_SKIP = 10_000
LIMITS = DecodeLimits(max_frame_bytes=MAX_FRAME, max_skip_bytes=MAX_SKIP)


@pytest.fixture(autouse=True, params=["c-loop", "python-loop"])
def frame_loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs with the frame loop in C and in Python (the discarding is the same Python for both)."""
    from relay.decode import frames

    if request.param == "c-loop" and frames.feed_frames is None:
        pytest.skip("the C frame loop is not built here")
    if request.param == "python-loop":
        monkeypatch.setattr(frames, "feed_frames", None)
    return str(request.param)


def record_frame(msg: str) -> bytes:
    """What a stock SocketHandler sends for a record of message ``msg``."""
    record = logging.LogRecord("app", logging.INFO, __file__, 1, msg, None, None)
    return logging.handlers.SocketHandler("unused", 0).makePickle(record)


def raw_frame(size: int, fill: int) -> bytes:
    """A frame declaring ``size`` bytes of payload counting up from ``fill`` (its first bytes tell it apart)."""
    return size.to_bytes(4, "big") + bytes((fill + i) % 256 for i in range(size))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[Record | BadFrame]:
    events: list[Record | BadFrame] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
        # Never more than one kept head plus its header while discarding, one frame otherwise.
        assert decoder.pending_bytes <= MAX_FRAME + 4
        if decoder.skipping:
            assert decoder.pending_bytes <= 4 + KEPT_OF_OVERSIZE
            assert decoder.frame_bytes <= 4 + KEPT_OF_OVERSIZE
    return events


# A stream of stock-handler records and oversize frames (within the skip cap), in any order.
pieces = st.lists(
    st.one_of(
        st.text(max_size=40).map(lambda msg: ("record", msg)),
        st.tuples(st.just("oversize"), st.integers(MAX_FRAME + 1, MAX_SKIP)),
    ),
    max_size=8,
)


@hypothesis.given(pieces=pieces, cuts=st.lists(st.integers(min_value=0), max_size=30))
@hypothesis.settings(max_examples=300, deadline=None)
def test_every_record_around_oversize_frames_arrives_whatever_the_reads(
    pieces: list[tuple[str, str | int]], cuts: list[int]
) -> None:
    stream = b""
    expected: list[tuple[str, object]] = []
    for index, (kind, value) in enumerate(pieces):
        if kind == "record":
            assert isinstance(value, str)
            stream += record_frame(value)
            expected.append(("record", value))
        else:
            assert isinstance(value, int)
            frame = raw_frame(value, index)
            stream += frame
            expected.append(("oversize", (frame[4 : 4 + KEPT_OF_OVERSIZE], value)))
    decoder = FrameDecoder(LIMITS)

    events = feed_all(decoder, split(stream, cuts))

    seen: list[tuple[str, object]] = []
    for event in events:
        if isinstance(event, BadFrame):
            size = int(event.reason.split()[2])
            seen.append(("oversize", (event.raw, size)))
        else:
            seen.append(("record", json.loads(event)["msg"]))
    assert seen == expected
    assert decoder.pending_bytes == 0
    assert not decoder.skipping


@hypothesis.given(size=st.integers(MAX_FRAME + 1, MAX_SKIP), cuts=st.lists(st.integers(min_value=0), max_size=20))
@hypothesis.settings(max_examples=200, deadline=None)
def test_the_dead_letter_comes_once_its_first_bytes_are_in(size: int, cuts: list[int]) -> None:
    frame = raw_frame(size, 7)
    decoder = FrameDecoder(LIMITS)
    fed = 0
    letters: list[BadFrame] = []
    for chunk in split(frame, cuts):
        events = decoder.feed(chunk)
        assert decoder.bad_frames_fed == len(events)
        letters += [event for event in events if isinstance(event, BadFrame)]
        fed += len(chunk)
        # Out as soon as the header and the kept bytes have arrived, not at the frame's end.
        assert len(letters) == (1 if fed >= 4 + KEPT_OF_OVERSIZE else 0)
    assert letters[0].raw == frame[4 : 4 + KEPT_OF_OVERSIZE]
    assert not decoder.skipping
    assert decoder.pending_bytes == 0


def test_a_header_over_the_skip_cap_while_nothing_is_skipped_raises() -> None:
    decoder = FrameDecoder(LIMITS)
    good = record_frame("kept")

    with pytest.raises(FrameTooLarge) as caught:
        decoder.feed(good + raw_frame(MAX_FRAME + 1, 0) + (MAX_SKIP + 1).to_bytes(4, "big"))

    assert [type(event) for event in caught.value.events] == [bytes, BadFrame]
    assert (caught.value.size, caught.value.limit) == (MAX_SKIP + 1, MAX_SKIP)


def test_bytes_inside_a_discarded_frame_are_never_read_as_headers() -> None:
    # The payload of the oversize frame is made of headers over the skip cap: none of them may count.
    payload = (MAX_SKIP + 1).to_bytes(4, "big") * ((MAX_FRAME + 4) // 4)
    stream = len(payload).to_bytes(4, "big") + payload + record_frame("after")
    decoder = FrameDecoder(LIMITS)

    events = feed_all(decoder, [stream[i : i + 3] for i in range(0, len(stream), 3)])

    assert [type(event) for event in events] == [BadFrame, bytes]
    assert json.loads(events[1])["msg"] == "after"


def test_a_frame_cut_short_before_its_first_bytes_are_in_still_has_its_dead_letter_at_eof() -> None:
    decoder = FrameDecoder(LIMITS)

    assert decoder.feed(raw_frame(MAX_FRAME + 1, 0)[:100]) == []
    assert decoder.skipping

    [letter] = decoder.finish()
    assert isinstance(letter, BadFrame)
    assert letter.raw == raw_frame(MAX_FRAME + 1, 0)[4:100]
    assert f"frame of {MAX_FRAME + 1} bytes" in letter.reason
    assert decoder.bad_frames_fed == 1
    assert decoder.finish() == []  # once


def test_a_frame_cut_short_after_its_dead_letter_adds_nothing_at_eof() -> None:
    decoder = FrameDecoder(LIMITS)

    [letter] = decoder.feed(raw_frame(MAX_FRAME + 1, 0)[:-1])

    assert isinstance(letter, BadFrame)
    assert decoder.skipping
    assert decoder.pending_bytes == 4
    assert decoder.finish() == []


def test_an_oversize_frame_smaller_than_the_kept_bytes_is_kept_whole() -> None:
    limits = DecodeLimits(max_frame_bytes=10, max_skip_bytes=1000)
    frame = raw_frame(100, 3)

    [letter] = FrameDecoder(limits).feed(frame)

    assert isinstance(letter, BadFrame)
    assert letter.raw == frame[4:]
