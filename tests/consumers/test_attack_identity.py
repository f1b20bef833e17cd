"""Attack findings on record identity in the consumer (BatchRenderer): each test shows a hole (xfail strict)."""

from __future__ import annotations

import pytest

from consumers.batch_renderer import BatchRenderer
from consumers.checkpoint import MAX_PRODUCERS, NO_PRODUCERS, Checkpoint, merge_producers
from consumers.formatting import build_formatter
from relay.common.counters import ConsumerStats
from tests.consumers.test_batch_renderer import A, messages, numbered
from tests.support.entries import entry_for, make_record


def renderer(written: Checkpoint) -> BatchRenderer:
    return BatchRenderer(build_formatter("json", "-"), lambda: written, ConsumerStats(), max_deliveries=3)


def as_pending(item: list[object]) -> tuple[bytes, dict[bytes, bytes]]:
    entry_id, flat = item
    return entry_id, dict(zip(flat[::2], flat[1::2], strict=True))  # type: ignore[index]


def token(n: int) -> str:
    return f"{n:016x}"


@pytest.mark.xfail(
    strict=True,
    reason="HOLE: an entry with an identity is never checked by id; a pending entry the checkpoint covers by "
    "last_id is written again when its token is not in Checkpoint.producers (checkpoint of the previous "
    "version, consumer upgraded after the catchers)",
)
def test_pending_entry_covered_by_the_checkpoint_id_but_unknown_token_is_not_written_twice() -> None:
    # The previous consumer version wrote entries 1..3 (catchers already numbered
    # them), checkpointed up to 3-0 (no producers in its slot) and was killed
    # before its XACK.  The new version restarts on that checkpoint: the pending
    # list gives 1..3 back.
    render = renderer(Checkpoint(offset=300, last_id="3-0"))
    pending = [as_pending(numbered(n, A, n)) for n in (1, 2, 3)]
    batch = render.render_pending(pending, {})  # type: ignore[arg-type]
    assert messages(batch.data) == []


@pytest.mark.xfail(
    strict=True,
    reason="HOLE: beyond MAX_PRODUCERS the least recent producer is forgotten; its records the file holds "
    "(checkpoint covers their ids) are written again when read again (pending list after a restart, or a "
    "group created again from 0 after NOGROUP on a new master)",
)
def test_records_of_a_forgotten_producer_read_again_are_not_written_twice() -> None:
    render = renderer(Checkpoint())
    # MAX_PRODUCERS + 1 catchers (process lifetimes) each wrote a record, token 0 first.
    items = [numbered(n + 1, token(n), 1) for n in range(MAX_PRODUCERS + 1)]
    first = render.render_items(items)
    assert first.lines == MAX_PRODUCERS + 1
    # The file holds all of them and the checkpoint says so (by id; producers: the last MAX_PRODUCERS).
    written = Checkpoint(
        offset=len(first.data),
        last_id=f"{MAX_PRODUCERS + 1}-0",
        producers=merge_producers(NO_PRODUCERS, first.producers),
    )
    assert token(0) not in written.producers
    restarted = renderer(written)
    # Killed before the XACK: on restart the pending list gives entry 1 (token 0's record 1) back.
    again = restarted.render_pending([as_pending(items[0])], {})  # type: ignore[list-item]
    assert messages(again.data) == []


def plain(entry_id: str, text: str) -> tuple[bytes, dict[bytes, bytes]]:
    """An entry without an identity, as ``logrelay dead-letters replay`` (or a catcher before seq) writes it."""
    return entry_id.encode(), entry_for(make_record(text, ()))


@pytest.mark.xfail(
    strict=True,
    reason="HOLE: after a failover whose new master numbers entries below the checkpoint's last_id (the "
    "renderer's own premise), entries without an identity (replayed dead letters) are skipped by id: lost",
)
def test_a_replayed_dead_letter_below_the_checkpoint_id_after_a_failover_is_written() -> None:
    # The file holds up to 90-0 (read from the old master) and A's records up to 3.
    render = renderer(Checkpoint(offset=100, last_id="90-0", producers={A: 3}))
    # The new master numbers from 50: a catcher's new record and a replayed dead letter.
    entry_id, fields = plain("51-0", "replayed letter")
    batch = render.render_items([numbered(50, A, 4), [entry_id, [v for pair in fields.items() for v in pair]]])
    assert messages(batch.data) == ["0 record 4", "replayed letter"]
