"""A reply's entries in runs of one producer's consecutive records (``producer_runs``): C against its reference.

An entry's identity is its ``seq`` field, ``TOKEN:N`` (relay.common.stream),
read only from the usual entry.  Checked on hiredis's lists and on a
``ReplyReader``'s ``ReplyEntries`` (and slices of them), for the C function
(where built) and ``producer_runs_python``, which must agree on every input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers import read_replies
from consumers.read_replies import ReplyReader, producer_runs, producer_runs_python
from tests.support.strategies import MALFORMED_SEQS, TOKENS, fuzz, seq_values

needs_c = pytest.mark.skipif(read_replies.IMPLEMENTATION != "c", reason="the C extension is not built here")

A, B, C = TOKENS
#: Both functions: the one the consumer calls (C where built) and the reference.
FUNCTIONS = [pytest.param(producer_runs, id="chosen"), pytest.param(producer_runs_python, id="python")]
by_function = pytest.mark.parametrize("runs_of", FUNCTIONS)
RunsOf = Callable[[Any], list[tuple[int, int, bytes | None, int]]]


def entry(n: int, seq: bytes | None = None, *, record: bytes = b'{"msg":"m"}') -> list[Any]:
    """A usual entry as hiredis makes it, with ``seq`` last (none if None)."""
    fields = [b"v", b"1", b"record", record, b"client", b"c:1", b"catcher", b"k", b"received", b"1.5"]
    return [b"1700000000000-%d" % n, fields if seq is None else [*fields, b"seq", seq]]


def seq(token: bytes, n: int) -> bytes:
    return b"%b:%d" % (token, n)


def entries_of(seqs: list[bytes | None]) -> list[Any]:
    return [entry(k, value) for k, value in enumerate(seqs)]


def encode(value: Any) -> bytes:
    if value is None:
        return b"*-1\r\n"
    if isinstance(value, bytes):
        return b"$%d\r\n%b\r\n" % (len(value), value)
    return b"*%d\r\n" % len(value) + b"".join(encode(item) for item in value)


def in_place(items: list[Any], *, resp3: bool = False) -> Any:
    """The same entries as a ``ReplyEntries``: read by the C reader from a reply's bytes."""
    body = encode(b"s") + encode(items)
    kind, entries = ReplyReader().feed((b"%1\r\n" + body) if resp3 else (b"*1\r\n*2\r\n" + body))
    assert kind == 0
    assert list(entries) == items
    return entries


def assert_runs_cover(runs: list[tuple[int, int, bytes | None, int]], items: list[Any]) -> None:
    """The shape every answer has: runs in order, back to back, none empty, covering all items, none that
    could be merged with the one before (same token and its next N, or both without an identity)."""
    position = 0
    for k, (start, count, token, first_n) in enumerate(runs):
        assert (start, count > 0) == (position, True)
        position += count
        if token is None:
            assert first_n == 0
        else:
            assert len(token) == 16
            assert first_n >= 1
            assert first_n + count - 1 < 10**18
        if k > 0:
            _, before_count, before_token, before_n = runs[k - 1]
            assert not (before_token is None and token is None)
            assert not (before_token is not None and token == before_token and first_n == before_n + before_count)
    assert position == len(items)


# ------------------------------------------------------------------ examples


@by_function
def test_consecutive_records_of_one_producer_are_one_run(runs_of: RunsOf) -> None:
    items = entries_of([seq(A, 7), seq(A, 8), seq(A, 9)])
    assert runs_of(items) == [(0, 3, A, 7)]


@by_function
def test_a_run_breaks_at_a_new_token_a_gap_a_step_back_and_an_entry_without_identity(runs_of: RunsOf) -> None:
    items = entries_of(
        [
            seq(A, 1), seq(A, 2),
            seq(B, 3),  # another producer
            seq(A, 3),  # A's next, but not next to A's run
            seq(A, 5),  # a gap
            seq(A, 4),  # a step back
            None, seq(A, 1) + b"x", None,  # no identity: one run of three
            seq(A, 5), seq(A, 6),
            seq(A, 6),  # the same number again
        ]
    )  # fmt: skip
    assert runs_of(items) == [
        (0, 2, A, 1),
        (2, 1, B, 3),
        (3, 1, A, 3),
        (4, 1, A, 5),
        (5, 1, A, 4),
        (6, 3, None, 0),
        (9, 2, A, 5),
        (11, 1, A, 6),
    ]


@by_function
def test_no_entries_no_runs_and_entries_without_seq_are_one_run(runs_of: RunsOf) -> None:
    assert runs_of([]) == []
    assert runs_of(entries_of([None] * 4)) == [(0, 4, None, 0)]


@by_function
def test_the_largest_number_and_every_token_digit(runs_of: RunsOf) -> None:
    largest = 10**18 - 1
    items = entries_of([seq(C, largest - 1), seq(C, largest), seq(b"0123456789abcdef", 1)])
    assert runs_of(items) == [(0, 2, C, largest - 1), (2, 1, A, 1)]


@by_function
@pytest.mark.parametrize("value", MALFORMED_SEQS)
def test_a_malformed_seq_is_no_identity_never_an_error(runs_of: RunsOf, value: bytes) -> None:
    items = entries_of([seq(A, 1), value, seq(A, 2)])
    assert runs_of(items) == [(0, 1, A, 1), (1, 1, None, 0), (2, 1, A, 2)]


def not_usual() -> list[list[Any]]:
    """Entries holding a well-formed seq that are not the usual entry: none has an identity."""
    good = entry(0, seq(A, 2))
    fields = good[1]
    return [
        [b"1-0", [b"v", b"2", *fields[2:]]],  # another schema
        [b"1-0", [*fields[:10], b"Seq", fields[11]]],  # another name
        [b"1-0", [*fields[:10], b"extra", b"x", b"seq", fields[11]]],  # seq not 11th
        [b"1-0", [*fields[:8], b"seq", fields[11], b"received", b"1.5"]],  # seq before received
        [b"1-0", [*fields, b"x", b"y"]],  # 14 fields
        [b"forged", fields],  # not a stream id
        [b"1-0", [value.decode() for value in fields]],  # a reply decoded to str
        ["1-0", fields],
        [b"1-0", [*fields[:11], bytearray(fields[11])]],  # not exactly bytes
        (b"1-0", fields),  # not a list
        [b"1-0", None],  # a trimmed pending entry
        [b"1-0", fields, b"more"],
    ]


@by_function
@pytest.mark.parametrize("odd", not_usual(), ids=lambda odd: repr(odd)[:40])
def test_only_the_usual_entry_has_an_identity(runs_of: RunsOf, odd: list[Any]) -> None:
    items = [entry(0, seq(A, 1)), odd, entry(2, seq(A, 2)), entry(3, seq(A, 3))]
    assert runs_of(items) == [(0, 1, A, 1), (1, 1, None, 0), (2, 2, A, 2)]


def test_anything_but_a_list_or_reply_entries_gets_the_reference_answer() -> None:
    items = entries_of([seq(A, 1), seq(A, 2), None])
    assert producer_runs(tuple(items)) == producer_runs_python(items) == [(0, 2, A, 1), (2, 1, None, 0)]


# ------------------------------------------------------------------ entries kept in a reply's bytes


@needs_c
@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_reply_entries_and_their_slices_give_the_runs_of_the_lists(resp3: bool) -> None:
    seqs = [seq(A, 1), seq(A, 2), seq(A, 3), None, seq(B, 9), seq(B, 10), b"junk", seq(A, 4)]
    items = [*entries_of(seqs), [b"1-99", None], [b"1-100", [b"a", b"b"]]]
    entries = in_place(items, resp3=resp3)
    assert producer_runs(entries) == producer_runs_python(items)
    expected = [(0, 3, A, 1), (3, 1, None, 0), (4, 2, B, 9), (6, 1, None, 0), (7, 1, A, 4), (8, 2, None, 0)]
    assert producer_runs(entries) == expected
    # A slice counts from its own start; the rows it shares are read in place.
    for start in range(len(items) + 1):
        for stop in (start, start + 1, start + 3, len(items)):
            assert producer_runs(entries[start:stop]) == producer_runs_python(items[start:stop])
    nested = entries[1:][3:][:3]
    assert producer_runs(nested) == [(0, 2, B, 9), (2, 1, None, 0)]
    assert producer_runs(entries[::2]) == producer_runs_python(items[::2])  # a stepped slice is a list


@needs_c
def test_reply_entries_of_no_entries_have_no_runs() -> None:
    entries = in_place([])
    assert producer_runs(entries) == []
    assert producer_runs(entries[3:]) == []


# ------------------------------------------------------------------ C against the reference

ids = st.tuples(st.integers(0, 2**48), st.integers(0, 99)).map(lambda t: b"%d-%d" % t)


@st.composite
def replies(draw: st.DrawFn) -> list[Any]:
    """Entries with generated seq values (runs, gaps, malformed values, none), and some that are not usual."""
    items: list[Any] = []
    for value in draw(seq_values(max_size=16)):
        item = entry(0, value)
        item[0] = draw(ids | st.sampled_from([b"x-1", b"1-", b"12"]))
        if draw(st.integers(0, 9)) == 0:
            item = draw(st.sampled_from(not_usual()[:6]))
            if value is not None:
                item = [item[0], [*item[1][:-1], value]]
        items.append(item)
    return items


@fuzz(500)
@given(replies())
def test_the_runs_cover_the_entries_and_follow_their_identities(items: list[Any]) -> None:
    """The reference against the contract, entry by entry: every entry of a run with a token has that token
    and the run's next number; the runs cover the entries and none could be merged with the one before."""
    runs = producer_runs_python(items)
    assert_runs_cover(runs, items)
    for start, count, token, first_n in runs:
        for k in range(start, start + count):
            fields = read_replies.usual_fields(items[k])
            found = read_replies.identity(fields[11]) if fields is not None and len(fields) == 12 else None
            assert found == ((token, first_n + k - start) if token is not None else None)


@needs_c
@fuzz(500)
@given(replies(), st.booleans())
def test_c_gives_the_references_runs_on_lists_entries_in_place_and_slices(items: list[Any], resp3: bool) -> None:
    expected = producer_runs_python(items)
    assert producer_runs(items) == expected
    if all(type(item) is list and len(item) == 2 for item in items):  # as Redis sends them: readable as bytes
        entries = in_place(items, resp3=resp3)
        assert producer_runs(entries) == expected
        for start in (1, len(items) // 2, len(items)):
            assert producer_runs(entries[start:]) == producer_runs_python(items[start:])
