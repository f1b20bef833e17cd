"""How the publisher cuts the head of its buffer into batches: their sizes, the window, the linger.

No I/O and no clock of its own but ``time.monotonic``: :class:`BatchCutter`
is handed the buffer and the batches in flight, and returns the batches to
send next.  A batch is at most ``max_records`` entries and ``max_bytes`` of
encoded entry (always at least one entry, however large); at most
``window`` are in flight at once.

The linger: once a batch was made, the next one goes when it is full or
when ``linger`` has passed since, whichever is first; after a quiet spell a
record goes at once.  Each script call, each reply and each wake-up of the
consumer's blocked read costs the same for 10 records as for 100, so at
moderate rates (tens of thousands a second) fewer, fuller batches cut the
CPU per record of the catcher, Redis and the consumer alike, for at most
``linger`` of latency (``python -m bench.suite`` measures both).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Final

from relay.publish.script import DeadLetterEntry, Entry, RecordEntry

__all__ = ["ENTRY_OVERHEAD", "Batch", "BatchCutter"]

# Rough per-entry memory besides its payload (tuple, str objects, deque slot).
ENTRY_OVERHEAD: Final = 120


class Batch:
    """Entries at the head of the buffer, sent as one script call."""

    __slots__ = ("applied", "entries", "first_record", "held", "packed", "pipelined", "sent_at", "seq", "size")

    def __init__(self, entries: list[Entry], size: int, seq: int, pipelined: bool, first_record: int = 1) -> None:
        self.entries = entries
        self.size = size  # their share of buffered_bytes
        self.seq = seq
        # The number of its first record (the records' identities, see relay.common.stream).
        self.first_record = first_record
        # Redis applied it and the replicas asked for have not all acknowledged it yet.
        self.applied = False
        # The records its last reply said were held back (stream full): sent again after it.
        self.held: list[RecordEntry] = []
        self.pipelined = pipelined  # sent behind the batch before it, before its reply
        self.packed: bytes | None = None  # its EVALSHA, once packed (for the script loaded then)
        self.sent_at = 0.0  # time.monotonic() of its last send, for the publish latency


class BatchCutter:
    """Makes the batches of one publisher, numbering them (the script's sequence numbers) from 1."""

    def __init__(self, *, max_records: int, max_bytes: int, window: int, linger: float) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.window = window
        self.linger = linger
        self._seq = 0
        # Records numbered so far: a batch's records get the next numbers.  A
        # record held back (stream full) is numbered again in a later batch;
        # it was never written under its first number.
        self._records = 0
        # When the last batch was made (time.monotonic()).
        self._last_at = float("-inf")

    def is_full(self, records: int, size: int) -> bool:
        """Whether that many entries of that size make at least one whole batch."""
        return records >= self.max_records or size >= self.max_bytes

    def linger_left(self) -> float:
        """Seconds a partial batch still waits for more records (0 or less: it may go now).

        Counted from the last batch made: while records keep coming, at most
        one partial batch goes per ``linger``, and none waits longer than
        that; a record after a quiet spell goes at once.  Full batches never
        wait.
        """
        if self.linger <= 0:
            return 0.0
        return self._last_at + self.linger - time.monotonic()

    def take(self, buffer: deque[Entry], in_flight: deque[Batch], *, hold_partial: bool) -> list[Batch]:
        """Batches of the entries behind those in flight, as many as the window has room for.

        ``hold_partial``: leave a last, partial batch in the buffer while
        :meth:`linger_left` says it waits.  The caller passes False when it
        decided the linger is over (or a batch is full, or it is closing):
        then everything goes, so it cannot spin on a buffer never sent.
        """
        # The window counts the batches Redis has not answered; those applied
        # and waiting for replicas (:attr:`Batch.applied`) stay in the buffer
        # and in flight, behind no limit but the buffer's.
        unanswered = sum(1 for batch in in_flight if not batch.applied)
        room = self.window - unanswered
        if room <= 0:
            return []
        start = sum(len(batch.entries) for batch in in_flight)
        batches: list[Batch] = []
        entries: list[Entry] = []
        size = dead = 0
        max_records, max_bytes = self.max_records, self.max_bytes
        # Sent before the reply of the batch before it: only behind a batch
        # Redis has not answered yet (one it applied, waiting for replicas, is answered).
        pipelined = unanswered > 0
        for entry in itertools.islice(buffer, start, start + room * max_records):
            # The entry's share of the buffer's bytes, as the publisher counts it
            # (inline: this runs per record, where a function call costs a fifth of
            # the loop's work; python -m bench.ingest).
            this = len(entry[0]) + ENTRY_OVERHEAD
            if type(entry) is DeadLetterEntry:
                this += len(entry.reason)
                letter = 1
            else:
                letter = 0
            # Always take at least one entry, however large.
            if entries and (len(entries) >= max_records or size + this > max_bytes):
                batches.append(self._batch(entries, size, pipelined or bool(batches), len(entries) - dead))
                if len(batches) == room:
                    return batches
                entries, size, dead = [], 0, 0
            entries.append(entry)
            size += this
            dead += letter
        if entries:
            # Behind batches in flight, a partial batch waits out its linger
            # (in the publisher's run(), once they are confirmed) rather than go at once.
            if hold_partial and not self.is_full(len(entries), size) and self.linger_left() > 0:
                return batches
            batches.append(self._batch(entries, size, pipelined or bool(batches), len(entries) - dead))
        if batches:
            self._last_at = time.monotonic()
        return batches

    def _batch(self, entries: list[Entry], size: int, pipelined: bool, records: int) -> Batch:
        self._seq += 1
        first = self._records + 1
        self._records += records
        return Batch(entries, size, self._seq, pipelined, first)
