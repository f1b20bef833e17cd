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

from relay.publish.script import DeadLetterEntry, Entry

__all__ = ["ENTRY_OVERHEAD", "Batch", "BatchCutter"]

# Rough per-entry memory besides its payload (tuple, str objects, deque slot).
ENTRY_OVERHEAD: Final = 120


class Batch:
    """Entries at the head of the buffer, sent as one script call."""

    __slots__ = ("entries", "packed", "pipelined", "sent_at", "seq", "size")

    def __init__(self, entries: list[Entry], size: int, seq: int, pipelined: bool) -> None:
        self.entries = entries
        self.size = size  # their share of buffered_bytes
        self.seq = seq
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
        room = self.window - len(in_flight)
        if room <= 0:
            return []
        start = sum(len(batch.entries) for batch in in_flight)
        batches: list[Batch] = []
        entries: list[Entry] = []
        size = 0
        max_records, max_bytes = self.max_records, self.max_bytes
        pipelined = bool(in_flight)
        for entry in itertools.islice(buffer, start, start + room * max_records):
            # The entry's share of the buffer's bytes, as the publisher counts it
            # (inline: this runs per record, where a function call costs a fifth of
            # the loop's work; python -m bench.ingest).
            this = len(entry[0]) + ENTRY_OVERHEAD
            if type(entry) is DeadLetterEntry:
                this += len(entry.reason)
            # Always take at least one entry, however large.
            if entries and (len(entries) >= max_records or size + this > max_bytes):
                batches.append(self._batch(entries, size, pipelined or bool(batches)))
                if len(batches) == room:
                    return batches
                entries, size = [], 0
            entries.append(entry)
            size += this
        if entries:
            # Behind batches in flight, a partial batch waits out its linger
            # (in the publisher's run(), once they are confirmed) rather than go at once.
            if hold_partial and not self.is_full(len(entries), size) and self.linger_left() > 0:
                return batches
            batches.append(self._batch(entries, size, pipelined or bool(batches)))
        if batches:
            self._last_at = time.monotonic()
        return batches

    def _batch(self, entries: list[Entry], size: int, pipelined: bool) -> Batch:
        self._seq += 1
        return Batch(entries, size, self._seq, pipelined)
