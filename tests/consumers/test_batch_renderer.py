"""BatchRenderer without Redis or a file: what is rendered, skipped, dead-lettered, acknowledged."""

from __future__ import annotations

import orjson

from consumers.batch_renderer import BatchRenderer
from consumers.checkpoint import Checkpoint
from consumers.formatting import build_formatter
from relay.common.counters import ConsumerStats
from tests.support.entries import entry_for, make_record


def entries(first: int, count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return [(f"{1000 + n}-0".encode(), entry_for(make_record("record %d", (n,)))) for n in range(first, first + count)]


def renderer(written: Checkpoint | None = None, max_deliveries: int = 3) -> BatchRenderer:
    return BatchRenderer(
        build_formatter("json", "-"), lambda: written or Checkpoint(), ConsumerStats(), max_deliveries=max_deliveries
    )


def test_each_entry_once_even_when_a_batch_is_read_again_before_it_is_written() -> None:
    render = renderer()
    first = render.render_pending(entries(0, 3), {})
    assert [orjson.loads(line)["msg"] for line in first.data.splitlines()] == ["record 0", "record 1", "record 2"]
    assert (first.lines, first.has_new, first.ack_count, first.last_id) == (3, True, 3, b"1002-0")
    again = render.render_pending(entries(1, 4), {})
    assert [orjson.loads(line)["msg"] for line in again.data.splitlines()] == ["record 3", "record 4"]
    assert again.ack_count == 4  # what was skipped is still acknowledged
    assert render.stats.already_written == 2


def test_what_the_sink_holds_is_skipped() -> None:
    render = renderer(written=Checkpoint(last_id="1001-0"))
    batch = render.render_pending(entries(0, 3), {})
    assert batch.lines == 1
    assert render.already_written(b"1001-0")
    assert not render.already_written(b"1003-0")


def test_an_entry_delivered_too_often_goes_to_the_dead_letters_and_a_bad_one_too() -> None:
    batch_entries = entries(0, 3)
    batch_entries[2][1][b"record"] = b"not json"
    batch = renderer(max_deliveries=3).render_pending(batch_entries, {b"1000-0": 4})
    assert batch.lines == 1
    reasons = {entry_id: reason for entry_id, _, reason in batch.dead}
    assert reasons[b"1000-0"] == "delivered 4 times without being written"
    assert reasons[b"1002-0"].startswith("cannot format: ")
