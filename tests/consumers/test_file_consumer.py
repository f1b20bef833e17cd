"""FileConsumer's batches: rendered while the previous one is still being written, yet each entry written once."""

from __future__ import annotations

import pytest

from consumers.file_consumer import FileConsumer
from consumers.group_reader import Entry
from tests.support.file_consumers import written


def entries(first: int, count: int) -> list[Entry]:
    return [
        (f"1700000000000-{n}".encode(), {b"v": b"1", b"record": b'{"n":%d}' % n, b"client": b"c", b"received": b"1"})
        for n in range(first, first + count)
    ]


async def test_a_batch_rendered_again_before_its_write_finished_is_not_written_twice(consumer: FileConsumer) -> None:
    # While batch N is written, batch N+1 is rendered.  If a failed read made
    # the reader return our own pending entries again (N's, not acknowledged
    # yet), rendering them must find them already handed over, though the
    # checkpoint does not say so yet.
    first = consumer.renderer.render_pending(entries(0, 5), {})
    again = consumer.renderer.render_pending(entries(0, 5), {})
    overlapping = consumer.renderer.render_pending(entries(3, 4), {})
    assert (first.lines, again.lines, again.last_new) == (5, 0, None)
    assert overlapping.lines == 2
    assert overlapping.last_new == b"1700000000000-6"
    for batch in (first, again, overlapping):
        await consumer._commit(batch)
    assert written(consumer) == list(range(7))
    assert consumer.stats.already_written == 7
    await consumer.commits.drained()
    assert consumer.stats.entries_acked == 14


@pytest.mark.parametrize("skipped", [0, 2])
async def test_entries_up_to_the_checkpoint_are_skipped_at_the_head_of_a_batch(
    consumer: FileConsumer, skipped: int
) -> None:
    if skipped:
        consumer.sink.write(b'{"n":0}\n{"n":1}\n', b"1700000000000-1")
        consumer.sink.sync()
    batch = consumer.renderer.render_pending(entries(0, 5), {})
    assert batch.lines == 5 - skipped
    await consumer._commit(batch)
    assert written(consumer) == list(range(5))
