"""The partial-frame budget (relay.net.partial_frames), without sockets."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from relay.net.partial_frames import HEADER_SIZE, SMALL_FRAME, WAKE_SCAN, PartialFrameBudget, large_frame_share

MIB = 1024 * 1024
READ = 64 * 1024


@dataclass(eq=False)
class Connection:
    """A holder that records what it was told."""

    budget_charge: int = 0
    waiting: bool = False
    told: list[str] = field(default_factory=list)

    def budget_wait(self) -> None:
        self.waiting = True
        self.told.append("wait")

    def budget_go_on(self) -> None:
        self.waiting = False
        self.told.append("go on")


def test_a_frame_that_fits_is_reserved_whole() -> None:
    budget = PartialFrameBudget(8 * MIB)
    connection = Connection()
    assert budget.settle(connection, held=100, need=MIB)
    assert connection.budget_charge == MIB
    assert budget.reserved == MIB
    assert budget.settle(connection, held=0, need=0)  # the frame completed
    assert budget.reserved == 0
    assert connection.told == []


def test_a_large_frame_beyond_its_share_waits_and_goes_on_when_one_completes() -> None:
    budget = PartialFrameBudget(8 * MIB)  # large frames: 7 MiB
    holders = [Connection() for _ in range(7)]
    for holder in holders:
        assert budget.settle(holder, held=READ, need=MIB)
    late = Connection()
    assert not budget.settle(late, held=READ, need=MIB)
    assert late.waiting
    assert budget.reserved == 7 * MIB
    assert budget.waiting_held == READ
    assert budget.total == 7 * MIB + READ
    assert budget.settle(holders[0], held=0, need=0)
    assert not late.waiting
    assert late.told == ["wait", "go on"]
    assert late.budget_charge == MIB
    assert budget.reserved == 7 * MIB
    assert budget.waiting_held == 0


def test_small_frames_keep_the_last_eighth_while_large_ones_fill_theirs() -> None:
    budget = PartialFrameBudget(8 * MIB)
    for _ in range(7):
        assert budget.settle(Connection(), held=READ, need=MIB)
    honest = [Connection() for _ in range(100)]
    assert all(budget.settle(holder, held=200, need=1000) for holder in honest)
    assert budget.settle(Connection(), held=READ, need=SMALL_FRAME)
    assert large_frame_share(8 * MIB) == 7 * MIB


def test_a_closed_connection_frees_its_reservation_and_wakes_the_oldest_waiter_first() -> None:
    budget = PartialFrameBudget(8 * MIB)
    holders = [Connection() for _ in range(7)]
    for holder in holders:
        budget.settle(holder, held=10, need=MIB)
    first, second = Connection(), Connection()
    budget.settle(first, held=10, need=MIB)
    budget.settle(second, held=10, need=MIB)
    budget.release(holders[3])
    assert (first.waiting, second.waiting) == (False, True)
    budget.release(first)
    assert not second.waiting
    assert budget.reserved == 7 * MIB


def fill(budget: PartialFrameBudget, amount: int) -> list[Connection]:
    """Reserve ``amount`` bytes more, in small frames."""
    holders = []
    while amount > 0:
        holder = Connection()
        assert budget.settle(holder, held=10, need=min(amount, SMALL_FRAME))
        holders.append(holder)
        amount -= SMALL_FRAME
    return holders


def test_a_waiter_that_does_not_fit_does_not_hold_up_smaller_ones_behind_it() -> None:
    budget = PartialFrameBudget(2 * MIB)
    holders = fill(budget, budget.limit)
    waiting_big, waiting_small = Connection(), Connection()
    assert not budget.settle(waiting_big, held=10, need=MIB)
    assert not budget.settle(waiting_small, held=10, need=1000)
    budget.settle(holders[0], held=10, need=SMALL_FRAME - 4096)  # frees 4 KiB
    assert waiting_big.waiting
    assert not waiting_small.waiting


def test_a_release_looks_at_a_bounded_number_of_waiters() -> None:
    budget = PartialFrameBudget(8 * MIB)
    large = Connection()
    assert budget.settle(large, held=10, need=7 * MIB)
    fill(budget, budget.limit - budget.reserved)
    waiters = [Connection() for _ in range(WAKE_SCAN + 10)]
    for waiter in waiters:
        assert not budget.settle(waiter, held=10, need=SMALL_FRAME)
    budget.release(large)  # room for 112 of them; one release looks at the first WAKE_SCAN
    assert [waiter.waiting for waiter in waiters] == [False] * WAKE_SCAN + [True] * 10


def test_what_waiters_hold_never_blocks_a_reservation() -> None:
    # Waiting connections hold what they read before they knew their frame
    # would not fit: if that counted against reservations, enough of them
    # could leave no room for any frame, and no one would ever go on.
    budget = PartialFrameBudget(2 * MIB)
    holder = Connection()
    budget.settle(holder, held=10, need=MIB)
    waiters = [Connection() for _ in range(40)]
    for waiter in waiters:
        assert not budget.settle(waiter, held=READ, need=MIB)
    assert budget.waiting_held == 40 * READ > budget.limit
    budget.release(holder)
    assert sum(not waiter.waiting for waiter in waiters) == 1


def test_reads_shrink_to_the_room_left_and_never_below_a_header() -> None:
    budget = PartialFrameBudget(2 * MIB)
    reading = Connection()
    assert budget.read_size(reading, held=0, read_size=READ) == READ
    fill(budget, budget.limit - 1000)
    assert budget.read_size(reading, held=0, read_size=READ) == 1000
    fill(budget, 1000)
    assert budget.read_size(reading, held=0, read_size=READ) == HEADER_SIZE


def test_a_reserved_frame_reads_what_its_reservation_covers_when_there_is_no_room() -> None:
    budget = PartialFrameBudget(2 * MIB)
    reading = Connection()
    assert budget.settle(reading, held=100, need=60_000)
    fill(budget, budget.limit - budget.reserved)
    assert budget.read_size(reading, held=100, read_size=READ) == 59_900
    assert budget.read_size(reading, held=59_990, read_size=READ) == 10


@pytest.mark.parametrize("limit", [0, 3])
def test_a_budget_smaller_than_a_header_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="at least a frame header"):
        PartialFrameBudget(limit)
