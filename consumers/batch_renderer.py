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

from consumers.checkpoint import MAX_PRODUCERS, Checkpoint, stream_id_key
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
        # As the checkpoint's floor, for the producers this renderer forgot.
        self._floor = (0, 0)

    def already_written(self, entry_id: bytes) -> bool:
        """Whether the file holds ``entry_id`` already, or a batch rendered before does."""
        return self._written().covers(entry_id) or self._rendered.covers(entry_id)

    def _known(self) -> dict[str, int]:
        if self._numbers is None:
            self._numbers = dict(self._written().producers)
        return self._numbers

    def _under_floor(self, entry_id: bytes) -> bool:
        """For a producer not known (forgotten, or before identities): whether the file holds ``entry_id``."""
        written = self._written()
        return stream_id_key(entry_id) <= max(stream_id_key(written.floor), self._floor)

    def _note(self, token: str, last: int, updates: dict[str, int], batch_end: bytes) -> None:
        """Producer ``token`` rendered up to record ``last``, in a batch ending at entry ``batch_end``."""
        known = self._known()
        known.pop(token, None)
        known[token] = updates[token] = last
        if len(known) > MAX_PRODUCERS:
            del known[next(iter(known))]
            # What the forgotten one rendered is at or below the end of this batch.
            self._floor = max(self._floor, stream_id_key(batch_end))

    def _select(self, items: Sequence[Any]) -> tuple[list[tuple[int, int]], dict[str, int]]:
        """The ranges ``[begin, end)`` of ``items`` the file does not hold yet, in order; the producers' new
        last numbers.

        A record with an identity is known by it alone: after a failover its
        stream id says nothing (a record the new master lost comes back
        under a new id; the new master numbers its entries from its own last
        one, which may be below what the file holds); one of a producer the
        checkpoint does not know, by its id against the checkpoint's floor.
        An entry without one (from a catcher older than identities) is known
        by its id: within a run of them, ids increase, so once one is past
        what is written, all later ones are.
        """
        known = self._known()
        updates: dict[str, int] = {}
        kept: list[tuple[int, int]] = []
        by_id = by_identity = republished = 0
        for start, count, token, first in producer_runs(items):
            if token is None:
                skip = 0
                while skip < count and self.already_written(items[start + skip][0]):
                    skip += 1
                by_id += skip
            else:
                name = token.decode()
                held = known.get(name, 0)
                if name in known:
                    skip = min(count, max(0, held - first + 1))
                else:
                    skip = 0
                    while skip < count and self._under_floor(items[start + skip][0]):
                        skip += 1
                if skip:
                    by_identity += skip
                    if not self.already_written(items[start + skip - 1][0]):
                        republished += skip  # under new ids: sent again after a failover
                if first + count - 1 > held:
                    self._note(name, first + count - 1, updates, items[-1][0])
            begin, end = start + skip, start + count
            if begin < end:
                if kept and kept[-1][1] == begin:
                    kept[-1] = (kept[-1][0], end)
                else:
                    kept.append((begin, end))
        self.stats.already_written += by_id + by_identity - republished
        if republished:
            self.stats.republished_skipped += republished
            log.info(
                "skipped %d records the file holds already (sent again by their catcher after a Redis failover)",
                republished,
            )
        return kept, updates

    def _format(self, items: Sequence[Any], kept: list[tuple[int, int]]) -> Pieces:
        """The formatter's pieces for the kept items (indices into ``items``)."""
        if kept == [(0, len(items))]:
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
        ack_ids = bulk_ids(items)
        last_id: bytes = items[-1][0]
        kept, producers = self._select(items)
        if not kept:
            return RenderedBatch(b"", 0, [], False, ack_ids, len(items), last_id)
        chunks: list[bytes] = []
        dead: list[tuple[bytes, dict[bytes, bytes], str]] = []
        for piece in self._format(items, kept):
            if isinstance(piece, bytes):
                chunks.append(piece)
            else:
                ((entry_id, fields),) = stream_entries([items[piece]])
                self._line(entry_id, fields or {}, chunks, dead)
        self._rendered_up_to(last_id)
        rendered = sum(end - begin for begin, end in kept)
        return RenderedBatch(
            b"".join(chunks), rendered - len(dead), dead, True, ack_ids, len(items), last_id, producers
        )

    def _rendered_up_to(self, entry_id: bytes) -> None:
        """Entries up to ``entry_id`` were rendered (never backwards: after a failover ids may be)."""
        if not self._rendered.covers(entry_id):
            self._rendered = Checkpoint(last_id=entry_id.decode())

    def render_pending(self, entries: list[Entry], deliveries: dict[bytes, int]) -> RenderedBatch:
        """Turn a batch of entries taken over from the pending list into lines and dead letters."""
        lines: list[bytes] = []
        dead: list[tuple[bytes, dict[bytes, bytes], str]] = []
        last_new: bytes | None = None
        producers: dict[str, int] = {}
        for entry_id, fields in entries:
            found = identity(fields.get(_SEQ, b"")) if fields else None
            if found is None:
                if self.already_written(entry_id):
                    self.stats.already_written += 1
                    continue
            else:
                # Known by its identity alone (see _select).
                name = found[0].decode()
                known = self._known()
                if found[1] <= known[name] if name in known else self._under_floor(entry_id):
                    self.stats.already_written += 1
                    continue
                self._note(name, found[1], producers, entries[-1][0])
            last_new = entry_id
            delivered = deliveries.get(entry_id, 1)
            if delivered > self.max_deliveries:
                dead.append((entry_id, fields, f"delivered {delivered} times without being written"))
                continue
            self._line(entry_id, fields, lines, dead)
        if last_new is not None:
            self._rendered_up_to(last_new)
        ack_ids = b"".join(bulk_string(entry_id) for entry_id, _ in entries)
        # has_new: the checkpoint moves to the batch's last entry (with the producers of what was new).
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
