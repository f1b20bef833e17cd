"""Entries from a read reply's lists: the C loop against the Python reference, and against redis-py's callback."""

from __future__ import annotations

import re
from typing import Any

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.connection import Connection

from consumers import read_replies
from consumers.group_reader import GroupReader
from consumers.read_replies import bulk_ids, bulk_ids_python, check_items, entries, entries_python
from relay.common.redis_protocol import bulk_string, pack_command, send_packed
from tests.support.realredis import RedisServer
from tests.support.strategies import fuzz

needs_c = pytest.mark.skipif(read_replies.IMPLEMENTATION != "c", reason="the C loop is not built here")

fields = st.lists(st.binary(max_size=12), max_size=12).map(lambda flat: flat[: len(flat) // 2 * 2])
items = st.lists(st.tuples(st.binary(max_size=20), fields | st.none()).map(list), max_size=20)
odd_items = st.lists(
    st.one_of(
        st.tuples(st.binary(max_size=5), fields | st.none()).map(list),
        st.lists(st.binary(max_size=3), max_size=3),
        st.tuples(st.text(max_size=3), st.lists(st.text(max_size=3), max_size=4)).map(list),
        st.tuples(st.binary(max_size=3), st.lists(st.binary(max_size=3), min_size=1, max_size=5)).map(list),
        st.none(),
        st.integers(),
    ),
    max_size=8,
)


def reference(reply: list[Any]) -> object:
    try:
        return entries_python(reply)
    except ValueError:
        return "refused"


@needs_c
@fuzz(500)
@given(items)
def test_usual_replies_are_taken_in_c_and_match(reply: list[Any]) -> None:
    fast = read_replies._convert(reply)  # type: ignore[misc]
    assert fast is not None
    assert fast == reference(reply)


@fuzz(500)
@given(odd_items)
def test_any_reply_gets_the_reference_answer(reply: list[Any]) -> None:
    try:
        answer: object = entries(reply)
    except ValueError:
        answer = "refused"
    assert answer == reference(reply)


def test_a_field_given_twice_keeps_its_last_value() -> None:
    assert entries([[b"1-0", [b"a", b"1", b"a", b"2"]]]) == [(b"1-0", {b"a": b"2"})]


def test_pack_command_packs_as_redis_py_does() -> None:
    args = ("XREADGROUP", "GROUP", "grüppe", b"c\r\n1", "COUNT", 1000, "STREAMS", "logrelay", ">")
    assert pack_command(*args) == b"".join(Connection().pack_command(*args))


@pytest.mark.parametrize("protocol", [2, 3])
async def test_a_real_reply_gives_what_redis_pys_callback_gives(redis_server: RedisServer, protocol: int) -> None:
    client = Redis.from_url(redis_server.url, protocol=protocol)
    try:
        for n in range(5):
            await client.xadd("s", {"v": "1", "record": b'{"n":%d}' % n, "client": "c", "n": n})
        await client.xgroup_create("s", "raw", id="0")
        await client.xgroup_create("s", "parsed", id="0")
        raw: Any = await send_packed(client, pack_command("XREADGROUP", "GROUP", "raw", "r", "STREAMS", "s", ">"))
        parsed: Any = await client.xreadgroup("parsed", "p", {"s": ">"})
        raw_items = next(iter(raw.values())) if isinstance(raw, dict) else raw[0][1]
        parsed_entries = next(iter(parsed.values()))[0] if isinstance(parsed, dict) else parsed[0][1]
        assert entries(raw_items) == [(entry_id, fields) for entry_id, fields in parsed_entries]
        assert len(entries(raw_items)) == 5
    finally:
        await client.aclose()


def test_check_items_takes_what_redis_sends_as_hiredis_makes_it() -> None:
    """Bytes, or str from a client that decodes replies; a trimmed pending entry's fields as None; no entries."""
    check_items([])
    check_items([[b"1-0", [b"a", b"1", b"b", b""]], [b"2-0", None], [b"3-0", []]])
    check_items([["1-0", ["a", "1"]], ["2-0", None]])


def hiredis_items(entries: bytes) -> list[Any]:
    """What hiredis makes of a RESP3 read reply of these entries (their bytes)."""
    parser = hiredis.Reader()
    parser.feed(b"%1\r\n$1\r\ns\r\n*2\r\n*2\r\n$3\r\n1-1\r\n*0\r\n" + entries)
    items: list[Any] = next(iter(parser.gets().values()))
    return items


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (b":1\r\n", "the entry is an integer; Redis sends an array of 2 (id, fields) there"),
        (b"*3\r\n$1\r\na\r\n*0\r\n*0\r\n", "the entry is an array of 3 elements"),
        (b"*2\r\n#t\r\n*0\r\n", "its id is a boolean; Redis sends a bulk string there"),
        (b"*2\r\n_\r\n*0\r\n", "its id is a null"),
        (b"*2\r\n$1\r\na\r\n%1\r\n$1\r\nk\r\n$1\r\nv\r\n", "its field list is a map; Redis sends an array"),
        (b"*2\r\n$1\r\na\r\n*1\r\n$1\r\nk\r\n", "its field list is an array of 1 elements"),
        (b"*2\r\n$1\r\na\r\n*2\r\n$1\r\nk\r\n,1.5\r\n", "element 1 of its field list is a double"),
        (b"*2\r\n$1\r\na\r\n*2\r\n-ERR x\r\n$1\r\nv\r\n", "element 0 of its field list is an error"),
        (b"*2\r\n$1\r\na\r\n*2\r\n>1\r\n:1\r\n$1\r\nv\r\n", "element 0 of its field list is a push"),
        (b"*2\r\n$1\r\na\r\n*2\r\n$1\r\nk\r\n$-1\r\n", "element 1 of its field list is a null"),
    ],
    ids=[
        "integer-entry",
        "entry-of-3",
        "boolean-id",
        "null-id",
        "map-fields",
        "odd-fields",
        "double",
        "error",
        "push",
        "null-value",
    ],
)
def test_check_items_refuses_what_hiredis_makes_of_a_type_redis_never_sends_there(entry: bytes, message: str) -> None:
    """The words of the C reader's refusals (``_read_replies_parser.c``), for the entry after a good one."""
    with pytest.raises(ValueError, match=f"^malformed reply from Redis: stream entry 1: {re.escape(message)}"):
        check_items(hiredis_items(entry))


@pytest.mark.skipif(read_replies.IMPLEMENTATION == "c", reason="only where no C loop is built")
def test_without_the_extension_the_python_loop_answers() -> None:
    assert entries([[b"1-0", [b"a", b"1"]]]) == [(b"1-0", {b"a": b"1"})]


@fuzz(300)
@given(items)
def test_ids_are_packed_as_the_python_reference_packs_them(reply: list[Any]) -> None:
    assert bulk_ids(reply) == bulk_ids_python(reply) == b"".join(bulk_string(item[0]) for item in reply)


@pytest.mark.parametrize("length", [0, 1, 9, 10, 41, 99, 100, 1000])
def test_ids_of_every_length_digit_count_are_packed_exactly(length: int) -> None:
    # The lengths' digits are written by hand in C: one, two, three and four digits.
    reply: list[Any] = [[b"7" * length, [b"a", b"1"]], [b"1-0", None]]
    assert bulk_ids(reply) == b"$%d\r\n%b\r\n$3\r\n1-0\r\n" % (length, b"7" * length)


async def test_an_xack_of_packed_ids_acknowledges_exactly_the_entries_read(redis_server: RedisServer) -> None:
    client = Redis.from_url(redis_server.url)
    try:
        for n in range(7):
            await client.xadd("s", {"n": n})
        reader = GroupReader(client, "s", "g", "c", batch_size=5, block_ms=100)
        await reader.ensure_group()
        first = await reader.new()
        await reader.new()  # the last two, left pending
        await reader.ack_items(first)
        pending = await client.xpending_range("s", "g", min="-", max="+", count=10)
        assert [row["message_id"] for row in pending] == [item[0] for item in (await client.xrange("s"))[5:]]
    finally:
        await client.aclose()
