"""Read entries into a :class:`~consumers.group_commit.RenderedBatch`: lines for the file, dead letters, ids to
acknowledge (sans-I/O).

What the file already holds is skipped, never rendered twice: everything the
sink's checkpoint covers, and every batch rendered before (handed to the group
commit, perhaps not yet checkpointed), since a re-read of the consumer's own
pending entries may return them again.  By stream id, and by record identity
(the ``seq`` field: a producer's token and the record's number): after a
Redis failover, records the new master lost come back from their catcher
under new ids, and the numbers say which the file holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from consumers.checkpoint import MAX_PRODUCERS, Checkpoint
from consumers.formatting import EntryFormatter
from consumers.group_commit import RenderedBatch
from consumers.group_reader import Entry, Items
from consumers.read_replies import Pieces, bulk_ids, identity, producer_runs
from consumers.read_replies import entries as stream_entries
from relay.common.counters import ConsumerStats
from relay.common.redis_protocol import bulk_string

__all__ = ["BatchRenderer"]

log = logging.getLogger("logrelay.consumer")

_SEQ = b"seq"


class BatchRenderer:
    """Renders batches in stream order with ``formatter``; ``written`` is the sink's checkpoint now.

    An entry delivered more than ``max_deliveries`` times (taken over from the
    pending list) goes to the dead letters instead: a record that crashes the
    consumer must not stop the file forever.
    """

    def __init__(
        self,
        formatter: EntryFormatter,
        written: Callable[[], Checkpoint],
        stats: ConsumerStats,
        *,
        max_deliveries: int,
    ) -> None:
        self.formatter = formatter
        self._written = written
        self.stats = stats
        self.max_deliveries = max_deliveries
        # Up to where batches were rendered, whether or not their write is done.
        self._rendered = Checkpoint()
        # Of each producer, the last record number rendered (the file's, then
        # every batch's since), least recently rendered first; made on first use.
        self._numbers: dict[str, int] | None = None

    def already_written(self, entry_id: bytes) -> bool:
        """Whether the file holds ``entry_id`` already, or a batch rendered before does."""
        return self._written().covers(entry_id) or self._rendered.covers(entry_id)

    def _known(self) -> dict[str, int]:
        if self._numbers is None:
            self._numbers = dict(self._written().producers)
        return self._numbers

    def _note(self, token: str, last: int, updates: dict[str, int]) -> None:
        """Producer ``token`` rendered up to record ``last``."""
        known = self._known()
        known.pop(token, None)
        known[token] = updates[token] = last
        if len(known) > MAX_PRODUCERS:
            del known[next(iter(known))]

    def _by_identity(self, items: Sequence[Any]) -> tuple[list[tuple[int, int]] | None, dict[str, int]]:
        """Which items to render, by record identity: None (all), or the ranges ``[begin, end)`` to keep;
        and the producers' new last numbers."""
        known = self._known()
        updates: dict[str, int] = {}
        skipped: list[tuple[int, int]] = []
        for start, count, token, first in producer_runs(items):
            if token is None:
                continue
            name = token.decode()
            last = first + count - 1
            held = known.get(name, 0)
            if first <= held:
                # Sent again after a failover: the file holds these already.
                skipped.append((start, start + min(count, held - first + 1)))
            if last > held:
                self._note(name, last, updates)
        if not skipped:
            return None, updates
        self.stats.republished_skipped += sum(end - begin for begin, end in skipped)
        log.info(
            "skipped %d records the file holds already (sent again by their catcher after a Redis failover)",
            sum(end - begin for begin, end in skipped),
        )
        kept: list[tuple[int, int]] = []
        position = 0
        for begin, end in skipped:
            if begin > position:
                kept.append((position, begin))
            position = end
        if position < len(items):
            kept.append((position, len(items)))
        return kept, updates

    def _format(self, items: Sequence[Any], kept: list[tuple[int, int]] | None) -> Pieces:
        """The formatter's pieces for the kept items (indices into ``items``)."""
        if kept is None:
            return self.formatter.format_items(items)
        pieces: Pieces = []
        for begin, end in kept:
            for piece in self.formatter.format_items(items[begin:end]):
                pieces.append(piece if isinstance(piece, bytes) else piece + begin)
        return pieces

    def render_items(self, items: Items) -> RenderedBatch:
        """Turn a batch of read entries (in stream order, as the parser gave them) into lines and dead letters.

        The formatter renders the usual entries in one call
        (:meth:`~consumers.formatting.EntryFormatter.format_items`); any other
        goes through :meth:`_line`, one by one.
        """
        start = 0
        # Redis lists a batch in stream order: once one entry is past what is
        # written, all later ones are.
        while start < len(items) and self.already_written(items[start][0]):
            start += 1
        self.stats.already_written += start
        ack_ids = bulk_ids(items)
        new = items[start:] if start else items
        if not new:
            return RenderedBatch(b"", 0, [], False, ack_ids, len(items), items[-1][0])
        kept, producers = self._by_identity(new)
        chunks: list[bytes] = []
        dead: list[tuple[bytes, dict[bytes, bytes], str]] = []
        for piece in self._format(new, kept):
            if isinstance(piece, bytes):
                chunks.append(piece)
            else:
                ((entry_id, fields),) = stream_entries([new[piece]])
                self._line(entry_id, fields or {}, chunks, dead)
        last_id: bytes = items[-1][0]
        self._rendered = Checkpoint(last_id=last_id.decode())
        rendered = len(new) if kept is None else sum(end - begin for begin, end in kept)
        # has_new even when every entry was known by its identity: the
        # checkpoint's last_id moves past them, so that they are acknowledged.
        return RenderedBatch(
            b"".join(chunks), rendered - len(dead), dead, True, ack_ids, len(items), last_id, producers
        )

    def render_pending(self, entries: list[Entry], deliveries: dict[bytes, int]) -> RenderedBatch:
        """Turn a batch of entries taken over from the pending list into lines and dead letters."""
        lines: list[bytes] = []
        dead: list[tuple[bytes, dict[bytes, bytes], str]] = []
        last_new: bytes | None = None
        producers: dict[str, int] = {}
        for entry_id, fields in entries:
            if last_new is None and self.already_written(entry_id):
                self.stats.already_written += 1
                continue
            last_new = entry_id
            found = identity(fields.get(_SEQ, b"")) if fields else None
            if found is not None:
                name = found[0].decode()
                if found[1] <= self._known().get(name, 0):
                    self.stats.republished_skipped += 1
                    continue
                self._note(name, found[1], producers)
            delivered = deliveries.get(entry_id, 1)
            if delivered > self.max_deliveries:
                dead.append((entry_id, fields, f"delivered {delivered} times without being written"))
                continue
            self._line(entry_id, fields, lines, dead)
        if last_new is not None:
            self._rendered = Checkpoint(last_id=last_new.decode())
        ack_ids = b"".join(bulk_string(entry_id) for entry_id, _ in entries)
        # Once an entry is new, every later one is: last_new is the batch's last entry.
        return RenderedBatch(
            b"".join(lines), len(lines), dead, last_new is not None, ack_ids, len(entries), entries[-1][0], producers
        )

    def _line(
        self,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        lines: list[bytes],
        dead: list[tuple[bytes, dict[bytes, bytes], str]],
    ) -> None:
        """Append the entry's line(s), or the entry to the dead letters with why it cannot be formatted."""
        try:
            lines.append(self.formatter.format(entry_id, fields))
        except Exception as exc:
            dead.append((entry_id, fields, f"cannot format: {type(exc).__name__}: {exc}"))
