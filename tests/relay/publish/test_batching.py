"""BatchCutter without sockets: how a buffer is cut into batches, and the linger."""

from __future__ import annotations

from collections import deque

from relay.publish.batching import ENTRY_OVERHEAD, Batch, BatchCutter
from relay.publish.script import DeadLetterEntry, Entry, RecordEntry


def records(count: int, size: int = 10) -> deque[Entry]:
    return deque(RecordEntry(b"x" * size, "10.0.0.1:5000", "1700000000.0") for _ in range(count))


def cutter(*, max_bytes: int = 1 << 20, window: int = 16, linger: float = 0.0) -> BatchCutter:
    return BatchCutter(max_records=10, max_bytes=max_bytes, window=window, linger=linger)


def test_batches_are_cut_by_count_numbered_in_order_and_pipelined_behind_the_first() -> None:
    batches = cutter().take(records(25), deque(), hold_partial=False)
    assert [len(b.entries) for b in batches] == [10, 10, 5]
    assert [b.seq for b in batches] == [1, 2, 3]
    assert [b.pipelined for b in batches] == [False, True, True]


def test_batches_are_cut_by_bytes_and_an_oversized_entry_still_goes_alone() -> None:
    size = 400 + ENTRY_OVERHEAD
    batches = cutter(max_bytes=2 * size).take(records(5, 400), deque(), hold_partial=False)
    assert [len(b.entries) for b in batches] == [2, 2, 1]
    assert [b.size for b in batches] == [2 * size, 2 * size, size]
    (alone,) = cutter(max_bytes=100).take(records(1, 400), deque(), hold_partial=False)
    assert len(alone.entries) == 1


def test_a_dead_letters_reason_counts_in_its_batchs_size() -> None:
    entry = DeadLetterEntry(b"raw", "not a pickle", "10.0.0.1:5000", "1700000000.0")
    (batch,) = cutter().take(deque([entry]), deque(), hold_partial=False)
    assert batch.size == 3 + len("not a pickle") + ENTRY_OVERHEAD


def test_the_window_bounds_the_batches_in_flight_and_they_are_skipped() -> None:
    cut = cutter(window=3)
    buffer = records(50)
    in_flight = deque(cut.take(buffer, deque(), hold_partial=False))
    assert [len(b.entries) for b in in_flight] == [10, 10, 10]
    assert cut.take(buffer, in_flight, hold_partial=False) == []
    in_flight.popleft()
    (nxt,) = cut.take(buffer, in_flight, hold_partial=False)
    assert nxt.entries == list(buffer)[30:40]
    assert (nxt.seq, nxt.pipelined) == (4, True)


def test_after_a_batch_a_partial_one_is_held_while_its_linger_lasts_and_a_full_one_never() -> None:
    cut = cutter(linger=60)
    assert cut.linger_left() <= 0  # a quiet spell: nothing waits
    (first,) = cut.take(records(3), deque(), hold_partial=True)
    assert len(first.entries) == 3
    assert cut.linger_left() > 59
    in_flight: deque[Batch] = deque([first])
    buffer = deque([*first.entries, *records(13)])
    (full,) = cut.take(buffer, in_flight, hold_partial=True)
    assert len(full.entries) == 10  # the 3 behind it wait
    assert [len(b.entries) for b in cut.take(buffer, deque([first, full]), hold_partial=False)] == [3]


def test_without_a_linger_nothing_is_held() -> None:
    cut = cutter(linger=0)
    cut.take(records(3), deque(), hold_partial=True)
    assert [len(b.entries) for b in cut.take(records(3), deque(), hold_partial=True)] == [3]
    assert not cut.is_full(9, 100)
    assert cut.is_full(10, 100)
    assert cut.is_full(1, 1 << 20)
