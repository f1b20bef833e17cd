"""The bytes of incomplete frames that all connections together may hold.

One connection holds at most one incomplete frame (``--max-frame-bytes``);
ten thousand connections could hold ten thousand of them (the defaults
allowed ~11 GiB).  :class:`PartialFrameBudget` caps their sum
(``--max-partial-bytes``):

* a connection whose frame header is read reserves the whole frame
  (header and declared length) before it reads on.  If the reservations
  leave no room for it, it waits, paused, holding only what it had read,
  and is resumed, first come first served, once frames complete or
  connections close and free enough;
* while reservations and waiting connections together leave less room
  than one read, reads shrink to what fits (at least a header's 4 bytes),
  so that a connection cannot buffer a chunk there is no room for.

Frames larger than one read (:data:`SMALL_FRAME`) may reserve at most
seven eighths of the budget: the last eighth stays for small frames, so a
few connections holding large incomplete frames (an attack, or a slow
sender of big records) do not stop the records of everyone else.

Reservations never exceed the budget; what waiting connections hold is at
most the budget again (plus 4 bytes per connection), and never stops a
reservation, so waiting cannot deadlock: every reservation is freed when
its frame completes, its connection closes, or ``--frame-timeout`` cuts a
connection that stopped sending.  No I/O: a :class:`Holder` (the
connection) is told to wait and to go on.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final, Protocol

__all__ = ["HEADER_SIZE", "SMALL_FRAME", "Holder", "PartialFrameBudget", "large_frame_share"]

HEADER_SIZE: Final = 4
#: Frames up to this size (header included) may use the whole budget; larger ones seven eighths of it.
SMALL_FRAME: Final = 64 * 1024


def large_frame_share(limit: int) -> int:
    """The part of a budget of ``limit`` bytes that frames larger than :data:`SMALL_FRAME` may reserve."""
    return limit - limit // 8


# Waiting connections looked at per release: a frame that does not fit does
# not block the ones behind it, and a release costs a bounded time.
WAKE_SCAN: Final = 64


class Holder(Protocol):
    """A connection, as the budget sees it."""

    #: Bytes the budget counts for it: its reservation, or what it holds while waiting.
    budget_charge: int

    def budget_wait(self) -> None:
        """Stop reading until :meth:`budget_go_on`."""

    def budget_go_on(self) -> None:
        """Its frame is reserved: read again."""


class PartialFrameBudget:
    """The reservations of incomplete frames (see the module docstring)."""

    __slots__ = ("_waiting", "high_water", "large_limit", "limit", "reserved", "waiting_held", "waits")

    def __init__(self, limit: int) -> None:
        if limit < HEADER_SIZE:
            raise ValueError("the partial-frame budget must hold at least a frame header")
        self.limit = limit
        self.large_limit = large_frame_share(limit)
        #: Bytes reserved for the frames connections are reading.
        self.reserved = 0
        #: Bytes held by connections waiting for a reservation.
        self.waiting_held = 0
        #: How often a connection had to wait for room (a counter for metrics).
        self.waits = 0
        #: The most counted at once since the owner last reset it (to give memory back after a peak).
        self.high_water = 0
        self._waiting: OrderedDict[Holder, int] = OrderedDict()

    @property
    def total(self) -> int:
        """Bytes counted for every connection: reservations and what waiting ones hold."""
        return self.reserved + self.waiting_held

    @property
    def waiting(self) -> int:
        """Connections waiting for room."""
        return len(self._waiting)

    def read_size(self, holder: Holder, held: int, read_size: int) -> int:
        """How many bytes ``holder`` may read now, holding ``held`` bytes of an incomplete frame.

        What its reservation still covers, plus the room left; never less
        than a header, so that every connection can say what it needs.
        """
        room = self.limit - self.reserved - self.waiting_held
        if room >= read_size:
            return read_size  # the usual case: room for a whole read
        covered = 0 if holder in self._waiting else holder.budget_charge - held
        return max(HEADER_SIZE, min(read_size, covered + room))

    def settle(self, holder: Holder, held: int, need: int) -> bool:
        """``holder`` now holds ``held`` bytes of a frame of ``need`` bytes (header included; 0 at a boundary).

        Returns True if it may go on reading: its frame is reserved.  False:
        it must wait (:meth:`Holder.budget_wait` is called), counted for
        what it holds, until :meth:`Holder.budget_go_on`.
        """
        freed = self._forget(holder)
        if self.reserved + need <= (self.limit if need <= SMALL_FRAME else self.large_limit):
            self.reserved += need
            holder.budget_charge = need
            if self.reserved + self.waiting_held > self.high_water:
                self.high_water = self.reserved + self.waiting_held
            if need < freed:
                self._wake()
            return True
        self.waiting_held += held
        holder.budget_charge = held
        if self.reserved + self.waiting_held > self.high_water:
            self.high_water = self.reserved + self.waiting_held
        self._waiting[holder] = need
        self.waits += 1
        holder.budget_wait()
        if freed:
            self._wake()
        return False

    def release(self, holder: Holder) -> None:
        """``holder`` is gone (its connection closed): free what it was counted for."""
        if self._forget(holder):
            self._wake()

    def _forget(self, holder: Holder) -> int:
        """Take ``holder``'s charge off the books; return the reservation it had (0 while waiting)."""
        charge, holder.budget_charge = holder.budget_charge, 0
        if self._waiting.pop(holder, None) is not None:
            self.waiting_held -= charge
            return 0
        self.reserved -= charge
        return charge

    def _wake(self) -> None:
        """Reserve the frames of waiting holders that fit now, oldest first."""
        if not self._waiting:
            return
        granted: list[Holder] = []
        for scanned, (holder, need) in enumerate(self._waiting.items()):
            if scanned >= WAKE_SCAN or self.reserved >= self.limit:
                break
            if self.reserved + need <= (self.limit if need <= SMALL_FRAME else self.large_limit):
                self.waiting_held -= holder.budget_charge
                self.reserved += need
                holder.budget_charge = need
                granted.append(holder)
        for holder in granted:
            del self._waiting[holder]
            holder.budget_go_on()
