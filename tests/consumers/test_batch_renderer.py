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


A, B = "0123456789abcdef", "fedcba9876543210"


def numbered(entry_id: int, token: str, number: int) -> list[object]:
    """A reply's item as a catcher writes it now: the usual fields, then seq (TOKEN:N)."""
    fields = entry_for(make_record("%s record %d", (token[:1], number)))
    fields[b"seq"] = f"{token}:{number}".encode()
    return [f"{entry_id}-0".encode(), [value for pair in fields.items() for value in pair]]


def messages(data: bytes) -> list[str]:
    return [orjson.loads(line)["msg"] for line in data.splitlines()]


def test_records_sent_again_under_new_ids_are_skipped_by_their_identity() -> None:
    render = renderer()
    first = render.render_items([numbered(1, A, 1), numbered(2, A, 2), numbered(3, A, 3)])
    assert messages(first.data) == ["0 record 1", "0 record 2", "0 record 3"]
    assert first.producers == {A: 3}
    # After a failover the new master lost A:2 and A:3; the catcher sent them
    # again, behind a record of another catcher, and then a new one.
    again = render.render_items([numbered(10, B, 1), numbered(11, A, 2), numbered(12, A, 3), numbered(13, A, 4)])
    assert messages(again.data) == ["f record 1", "0 record 4"]
    assert (again.lines, again.ack_count, again.has_new, again.last_id) == (2, 4, True, b"13-0")
    assert again.producers == {B: 1, A: 4}
    assert render.stats.republished_skipped == 2


def test_a_batch_of_records_the_file_holds_is_only_acknowledged() -> None:
    render = renderer(written=Checkpoint(last_id="5-0", producers={A: 9}))
    batch = render.render_items([numbered(20, A, 8), numbered(21, A, 9)])
    assert (batch.data, batch.lines, batch.has_new, batch.ack_count) == (b"", 0, False, 2)
    assert batch.producers == {}
    assert render.stats.republished_skipped == 2


def test_the_checkpoints_producers_are_where_skipping_starts() -> None:
    render = renderer(written=Checkpoint(last_id="5-0", producers={A: 5}))
    batch = render.render_items([numbered(20, A, 5), numbered(21, A, 6), numbered(22, B, 1)])
    assert messages(batch.data) == ["0 record 6", "f record 1"]


def test_pending_entries_are_skipped_by_their_identity_too() -> None:
    render = renderer(written=Checkpoint(last_id="5-0", producers={A: 2}))
    pending = [
        (item[0], dict(zip(item[1][::2], item[1][1::2], strict=True)))  # type: ignore[index]
        for item in (numbered(6, A, 2), numbered(7, A, 3))
    ]
    batch = render.render_pending(pending, {})  # type: ignore[arg-type]
    assert messages(batch.data) == ["0 record 3"]
    assert batch.producers == {A: 3}
    assert render.stats.already_written == 1


def test_records_without_an_identity_are_known_by_their_ids_only() -> None:
    render = renderer(written=Checkpoint(last_id="1001-0", producers={A: 50}))
    batch = render.render_items(
        [[entry_id, [v for pair in fields.items() for v in pair]] for entry_id, fields in entries(0, 4)]
    )
    assert messages(batch.data) == ["record 2", "record 3"]
    assert render.stats.republished_skipped == 0


def test_new_records_numbered_below_what_the_file_holds_are_written() -> None:
    # After a failover the new master numbers its entries from its own last
    # one: below ids the file holds (read from the old master).  Their
    # identities are new: they are written.
    render = renderer(written=Checkpoint(last_id="90-0", producers={A: 3}))
    batch = render.render_items([numbered(50, B, 1), numbered(51, A, 4)])
    assert messages(batch.data) == ["f record 1", "0 record 4"]
    pending = render.render_pending(
        [(b"52-0", dict(zip(*[iter(numbered(52, A, 5)[1])] * 2, strict=True)))],  # type: ignore[call-overload]
        {},
    )
    assert messages(pending.data) == ["0 record 5"]
