"""Read entries into a :class:`~consumers.group_commit.RenderedBatch`: lines for the file, dead letters, ids to
acknowledge (sans-I/O).

What the file already holds is skipped, never rendered twice: everything the
sink's checkpoint covers, and every batch rendered before (handed to the group
commit, perhaps not yet checkpointed), since a re-read of the consumer's own
pending entries may return them again.
"""

from __future__ import annotations

from collections.abc import Callable

from consumers.checkpoint import Checkpoint
from consumers.formatting import EntryFormatter
from consumers.group_commit import RenderedBatch
from consumers.group_reader import Entry, Items
from consumers.read_replies import bulk_ids
from consumers.read_replies import entries as stream_entries
from relay.common.counters import ConsumerStats
from relay.common.redis_protocol import bulk_string

__all__ = ["BatchRenderer"]


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

    def already_written(self, entry_id: bytes) -> bool:
        """Whether the file holds ``entry_id`` already, or a batch rendered before does."""
        return self._written().covers(entry_id) or self._rendered.covers(entry_id)

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
        chunks: list[bytes] = []
        dead: list[tuple[bytes, dict[bytes, bytes], str]] = []
        for piece in self.formatter.format_items(new):
            if isinstance(piece, bytes):
                chunks.append(piece)
            else:
                ((entry_id, fields),) = stream_entries([new[piece]])
                self._line(entry_id, fields or {}, chunks, dead)
        last_id: bytes = items[-1][0]
        self._rendered = Checkpoint(last_id=last_id.decode())
        return RenderedBatch(b"".join(chunks), len(new) - len(dead), dead, True, ack_ids, len(items), last_id)

    def render_pending(self, entries: list[Entry], deliveries: dict[bytes, int]) -> RenderedBatch:
        """Turn a batch of entries taken over from the pending list into lines and dead letters."""
        lines: list[bytes] = []
        dead: list[tuple[bytes, dict[bytes, bytes], str]] = []
        last_new: bytes | None = None
        for entry_id, fields in entries:
            if last_new is None and self.already_written(entry_id):
                self.stats.already_written += 1
                continue
            last_new = entry_id
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
            b"".join(lines), len(lines), dead, last_new is not None, ack_ids, len(entries), entries[-1][0]
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
