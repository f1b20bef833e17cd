"""Record identity in the consumer (BatchRenderer) where the checkpoint does not know a producer: a file of
an earlier version, a producer forgotten beyond MAX_PRODUCERS; and replayed dead letters after a failover."""

from __future__ import annotations

from consumers.batch_renderer import BatchRenderer
from consumers.checkpoint import MAX_PRODUCERS, NO_PRODUCERS, Checkpoint, merge_producers
from consumers.formatting import build_formatter
from relay.common.counters import ConsumerStats
from tests.consumers.test_batch_renderer import A, messages, numbered


def renderer(written: Checkpoint) -> BatchRenderer:
    return BatchRenderer(build_formatter("json", "-"), lambda: written, ConsumerStats(), max_deliveries=3)


def as_pending(item: list[object]) -> tuple[bytes, dict[bytes, bytes]]:
    entry_id, flat = item
    return entry_id, dict(zip(flat[::2], flat[1::2], strict=True))  # type: ignore[index]


def token(n: int) -> str:
    return f"{n:016x}"


def test_pending_entry_covered_by_the_checkpoint_id_but_unknown_token_is_not_written_twice() -> None:
    # The previous consumer version wrote entries 1..3 (catchers already numbered
    # them), checkpointed up to 3-0 (no producers in its slot) and was killed
    # before its XACK.  The new version restarts on that checkpoint: the pending
    # list gives 1..3 back.
    # (FileSink.open gives such a checkpoint its last_id as floor.)
    render = renderer(Checkpoint(offset=300, last_id="3-0", floor="3-0"))
    pending = [as_pending(numbered(n, A, n)) for n in (1, 2, 3)]
    batch = render.render_pending(pending, {})  # type: ignore[arg-type]
    assert messages(batch.data) == []


def test_records_of_a_forgotten_producer_read_again_are_not_written_twice() -> None:
    render = renderer(Checkpoint())
    # MAX_PRODUCERS + 1 catchers (process lifetimes) each wrote a record, token 0 first.
    items = [numbered(n + 1, token(n), 1) for n in range(MAX_PRODUCERS + 1)]
    first = render.render_items(items)
    assert first.lines == MAX_PRODUCERS + 1
    # The file holds all of them and the checkpoint says so (producers: the last MAX_PRODUCERS;
    # the forgotten one by id, under the floor FileSink.write raised to the batch's end).
    producers, forgotten = merge_producers(NO_PRODUCERS, first.producers)
    assert forgotten
    written = Checkpoint(
        offset=len(first.data), last_id=f"{MAX_PRODUCERS + 1}-0", producers=producers, floor=f"{MAX_PRODUCERS + 1}-0"
    )
    assert token(0) not in written.producers
    restarted = renderer(written)
    # Killed before the XACK: on restart the pending list gives entry 1 (token 0's record 1) back.
    again = restarted.render_pending([as_pending(items[0])], {})  # type: ignore[list-item]
    assert messages(again.data) == []


def test_a_replayed_dead_letter_below_the_checkpoint_id_after_a_failover_is_written() -> None:
    # The file holds up to 90-0 (read from the old master) and A's records up to 3.
    render = renderer(Checkpoint(offset=100, last_id="90-0", producers={A: 3}, floor="10-0"))
    # The new master numbers from 50: a catcher's new record, and a dead letter
    # replayed there (``logrelay dead-letters replay`` numbers what it writes
    # under a token of its own).
    batch = render.render_items([numbered(50, A, 4), numbered(51, token(7), 1)])
    assert messages(batch.data) == ["0 record 4", "0 record 1"]


def test_the_renderer_keeps_a_floor_for_the_producers_it_forgot() -> None:
    render = renderer(Checkpoint())
    items = [numbered(n + 1, token(n), 1) for n in range(MAX_PRODUCERS + 1)]
    assert render.render_items(items).lines == MAX_PRODUCERS + 1
    # Read again before anything was checkpointed (a pending re-read): nothing twice.
    again = render.render_items(items[:2])
    assert again.lines == 0
