"""Read replies kept as bytes (``ReplyReader``, ``ReplyEntries``): what hiredis makes of the same bytes, in any chunks.

The consumer reads its XREADGROUP replies this way (consumers.reader); the
renderers then read the entries in place.  Every check here compares with
hiredis, the parser redis-py would have used, on replies a real redis-server
sent (RESP2 and RESP3) and on generated ones.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError

from consumers import streamentries
from consumers.formatting import build_formatter
from consumers.reader import GroupReader
from consumers.streamentries import ReplyReader, bulk_ids
from relay.resp import pack_command
from tests.polling import wait_until
from tests.realredis import RedisServer
from tests.relay.test_fuzz import fuzz

pytestmark = pytest.mark.skipif(streamentries.IMPLEMENTATION != "c", reason="the C extension is not built here")

ENTRIES, NIL, ERROR, OTHER = 0, 1, 2, 3
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s [%(client)s %(entry_id)s]"


def usual_fields(n: int, client: str = "10.0.0.1:5000") -> dict[str, str | bytes]:
    record = {
        "name": "app.db",
        "msg": f"query {n} took {n % 7} ms ✓",
        "levelname": "INFO",
        "levelno": 20,
        "created": 1_700_000_000.25 + n,
        "msecs": 250.0,
        "exc_info": None,
        "exc_text": None,
        "stack_info": None,
        "seq": n,
    }
    return {"v": "1", "record": json.dumps(record), "client": client, "catcher": "c1", "received": "1700000000.5"}


def fill(server: RedisServer) -> None:
    """Usual entries, with unusual ones among them (other fields, other order, not JSON)."""
    with server.client() as client:
        for n in range(40):
            client.xadd("s", usual_fields(n, client=f"10.0.0.{n % 3}:5000"))  # type: ignore[arg-type]
        client.xadd("s", {"v": "1", "record": "not json", "client": "a", "catcher": "c1", "received": "1"})
        client.xadd("s", {"record": "{}", "v": "1"})
        client.xadd("s", {"other": "x"})
        client.xadd("s", {"v": "2", **{k: v for k, v in usual_fields(99).items() if k != "v"}})  # type: ignore[dict-item]
        for n in range(40, 50):
            client.xadd("s", usual_fields(n))  # type: ignore[arg-type]
        client.xgroup_create("s", "g", id="0")


def raw_reply(server: RedisServer, *command: str | int, resp3: bool = False) -> bytes:
    """The bytes redis-server answers to ``command``, read until hiredis says the reply is whole."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        if resp3:
            sock.sendall(pack_command("HELLO", 3))
            read_until_whole(sock)
        sock.sendall(pack_command(*command))
        return read_until_whole(sock)


def read_until_whole(sock: socket.socket) -> bytes:
    parser = hiredis.Reader()
    data = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, "redis-server closed the connection"
        data += chunk
        parser.feed(chunk)
        if parser.gets() is not False:
            return data


def hiredis_parse(data: bytes) -> Any:
    parser = hiredis.Reader()
    parser.feed(data)
    return parser.gets()


def hiredis_entries(data: bytes) -> list[Any]:
    reply = hiredis_parse(data)
    return next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]


def feed_in_chunks(data: bytes, cuts: list[int]) -> tuple[int, Any]:
    """Feed ``data`` cut at ``cuts``; None must come back until the last chunk."""
    reader = ReplyReader()
    bounds = [0, *sorted(set(cuts)), len(data)]
    found = None
    for start, end in itertools.pairwise(bounds):
        if start == end:
            continue
        assert found is None, "a result before the reply was whole"
        found = reader.feed(data[start:end])
    assert found is not None, "no result once the reply was whole"
    return found  # type: ignore[no-any-return]


@pytest.fixture
def stream(redis_server: RedisServer) -> RedisServer:
    fill(redis_server)
    return redis_server


@pytest.fixture(params=[False, True], ids=["resp2", "resp3"])
def read_reply(request: pytest.FixtureRequest, stream: RedisServer) -> bytes:
    return raw_reply(stream, "XREADGROUP", "GROUP", "g", "c", "COUNT", 1000, "STREAMS", "s", ">", resp3=request.param)


def cut_points(data: bytes) -> Iterator[list[int]]:
    """Cuts that split every kind of place: headers, lengths, "\\r\\n", values; random ones."""
    yield []
    yield list(range(1, len(data)))  # byte by byte
    for at in range(1, min(40, len(data))):  # inside the head
        yield [at]
    rng = random.Random(7)
    for _ in range(30):
        yield rng.sample(range(1, len(data)), min(5, len(data) - 1))


def test_a_real_reply_in_any_chunks_gives_the_entries_hiredis_gives(read_reply: bytes) -> None:
    expected = hiredis_entries(read_reply)
    assert len(expected) == 54
    for cuts in cut_points(read_reply):
        kind, entries = feed_in_chunks(read_reply, cuts)
        assert kind == ENTRIES
        assert len(entries) == len(expected)
        assert list(entries) == expected


def test_entries_index_and_slice_as_a_list_does(read_reply: bytes) -> None:
    expected = hiredis_entries(read_reply)
    _, entries = feed_in_chunks(read_reply, [])
    assert entries[0] == expected[0]
    assert entries[-1] == expected[-1]
    assert entries[-54] == expected[0]
    for bad in (54, -55):
        with pytest.raises(IndexError):
            entries[bad]
    windows = (slice(3, None), slice(None, 5), slice(-4, None), slice(10, 2), slice(1, 20, 3), slice(None, None, -1))
    for window in windows:
        assert list(entries[window]) == expected[window]
    nested = entries[2:][3:][:4]
    assert list(nested) == expected[5:9]
    del entries  # the slice keeps the buffer alive
    assert list(nested) == expected[5:9]


def test_renderers_and_ids_read_the_entries_in_place_as_from_hiredis_lists(read_reply: bytes) -> None:
    lists = hiredis_entries(read_reply)
    _, entries = feed_in_chunks(read_reply, [])
    assert bulk_ids(entries) == bulk_ids(lists)
    assert bulk_ids(entries[7:]) == bulk_ids(lists[7:])
    for spec in ("json", TEXT_FORMAT):
        # one formatter for both: the metadata cache must not make them agree
        pieces_from_lists = build_formatter(spec).format_items(lists)
        pieces_in_place = build_formatter(spec).format_items(entries)
        assert pieces_in_place == pieces_from_lists
        # the unusual entries are left to the caller, by index
        assert [p for p in pieces_in_place if isinstance(p, int)] == [40, 41, 42, 43]
        assert build_formatter(spec).format_items(entries[41:]) == build_formatter(spec).format_items(lists[41:])


def test_text_lines_with_a_record_check_callable_sees_each_record() -> None:
    record = str(usual_fields(1)["record"]).encode()
    data = encode([[b"1-1", usual_list(record)]])
    _, entries = feed_in_chunks(data, [])
    formatter = build_formatter("%(name)s %(message)s")
    seen: list[bytes] = []

    def check(record: bytes) -> bool:
        seen.append(record)
        return True

    assert streamentries.text_lines is not None
    plan = formatter.plan  # type: ignore[attr-defined]
    metadata = formatter._metadata.texts  # type: ignore[attr-defined]
    second = formatter._formatter.second_bytes  # type: ignore[attr-defined]
    assert streamentries.text_lines(entries, plan, metadata, second, check) == ["app.db query 1 took 1 ms ✓\n".encode()]
    assert seen == [record]


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_a_timed_out_block_is_nil(stream: RedisServer, resp3: bool) -> None:
    raw_reply(stream, "XREADGROUP", "GROUP", "g", "c", "COUNT", 1000, "STREAMS", "s", ">")
    data = raw_reply(stream, "XREADGROUP", "GROUP", "g", "c", "BLOCK", 1, "STREAMS", "s", ">", resp3=resp3)
    assert hiredis_parse(data) is None
    for cuts in cut_points(data):
        assert feed_in_chunks(data, cuts) == (NIL, None)


def test_an_error_reply_is_its_message(stream: RedisServer) -> None:
    data = raw_reply(stream, "XREADGROUP", "GROUP", "nogroup", "c", "STREAMS", "s", ">")
    for cuts in cut_points(data):
        kind, message = feed_in_chunks(data, cuts)
        assert kind == ERROR
        assert message.startswith(b"NOGROUP ")
        assert b"\r" not in message


@pytest.mark.parametrize(
    "command",
    [("XAUTOCLAIM", "s", "g", "c2", 0, "0"), ("XRANGE", "s", "-", "+", "COUNT", 3), ("PING",), ("XLEN", "s")],
    ids=["xautoclaim", "xrange", "ping", "xlen"],
)
@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_any_other_reply_comes_back_whole_for_a_general_parser(
    stream: RedisServer, command: tuple[str | int, ...], resp3: bool
) -> None:
    raw_reply(stream, "XREADGROUP", "GROUP", "g", "c", "COUNT", 5, "STREAMS", "s", ">")  # pending, for XAUTOCLAIM
    data = raw_reply(stream, *command, resp3=resp3)
    for cuts in cut_points(data):
        assert feed_in_chunks(data, cuts) == (OTHER, data)


def test_a_push_before_the_reply_is_skipped(read_reply: bytes) -> None:
    push = b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"
    data = push + push + read_reply
    for cuts in [[], [3], [len(push)], [len(push) + 2], list(range(1, 80))]:
        kind, entries = feed_in_chunks(data, cuts)
        assert kind == ENTRIES
        assert list(entries) == hiredis_entries(read_reply)


@pytest.mark.parametrize(
    "data",
    [b"?x\r\n", b"*1\r\n?", b"$3\r\nabcd\r\n", b"*x\r\n", b"$-2\r\n", b"$99999999999999\r\n", b":1\n"],
    ids=["unknown-type", "unknown-inner", "bulk-overrun", "bad-length", "negative-bulk", "huge-length", "bare-newline"],
)
def test_bytes_that_are_not_resp_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="malformed reply"):
        feed_in_chunks(data, [])


def test_bytes_past_the_reply_are_refused(read_reply: bytes) -> None:
    for data in (read_reply + b"+OK\r\n", b"*-1\r\n+OK\r\n", b"-ERR x\r\n:1\r\n", b":1\r\n:2\r\n"):
        with pytest.raises(ValueError, match="bytes after the reply"):
            feed_in_chunks(data, [])


def test_a_reader_reads_one_reply() -> None:
    reader = ReplyReader()
    assert reader.feed(b"*-1\r\n") == (NIL, None)
    with pytest.raises(ValueError, match="read already"):
        reader.feed(b"*-1\r\n")


# ------------------------------------------------------------------ generated replies


def usual_list(record: bytes, entry_client: bytes = b"c:1") -> list[bytes]:
    return [b"v", b"1", b"record", record, b"client", entry_client, b"catcher", b"k", b"received", b"1.5"]


def encode(entries: list[Any], *, resp3: bool = False, stream: bytes = b"s") -> bytes:
    def element(value: Any) -> bytes:
        if value is None:
            return b"*-1\r\n"
        if isinstance(value, bytes):
            return b"$%d\r\n%b\r\n" % (len(value), value)
        if isinstance(value, int):
            return b":%d\r\n" % value
        return b"*%d\r\n" % len(value) + b"".join(element(item) for item in value)

    body = element(stream) + element(entries)
    return (b"%1\r\n" + body) if resp3 else (b"*1\r\n*2\r\n" + body)


ids = st.tuples(st.integers(0, 2**48), st.integers(0, 99)).map(lambda t: b"%d-%d" % t)
names = st.sampled_from([b"v", b"1", b"record", b"client", b"catcher", b"received", b"x", b""])
values = st.binary(max_size=40) | st.sampled_from([b"{}", b'{"a": 1}', b'{"msg": "\\u00e9"}', b"\r\n"])
usual = st.builds(lambda i, r, c: [i, usual_list(r, c)], ids, values, st.binary(max_size=6))
odd = st.one_of(
    st.tuples(ids | st.binary(max_size=5), st.lists(names | values, max_size=12) | st.none()).map(list),
    st.lists(st.binary(max_size=4), max_size=3),
    st.tuples(ids, st.lists(st.integers(-5, 5) | st.binary(max_size=3), max_size=4)).map(list),
)


def test_ids_of_entries_that_are_not_lists_are_not_read_from_their_contents() -> None:
    # A bulk entry whose bytes look like a bulk string: no id in it.
    entries = [[b"1-1", usual_list(b"{}")], b"$1\r\nx\r\n", [b"2-2", None]]
    _, got = feed_in_chunks(encode(entries), [])
    lists = hiredis_entries(encode(entries))
    assert outcome(bulk_ids, got) == outcome(bulk_ids, lists)
    assert outcome(bulk_ids, got[2:]) == bulk_ids(lists[2:]) == b"$3\r\n2-2\r\n"


def outcome(function: Any, *args: Any) -> object:
    try:
        return function(*args)
    except Exception as exc:
        return type(exc)


@fuzz(300)
@given(st.lists(usual | odd, max_size=12), st.booleans(), st.data())
def test_generated_replies_match_hiredis_in_any_chunks(entries: list[Any], resp3: bool, data: st.DataObject) -> None:
    raw = encode(entries, resp3=resp3)
    cuts = data.draw(st.lists(st.integers(1, max(1, len(raw) - 1)), max_size=6))
    kind, got = feed_in_chunks(raw, cuts)
    lists = hiredis_entries(raw)
    assert kind == ENTRIES
    assert list(got) == lists
    assert outcome(bulk_ids, got) == outcome(bulk_ids, lists)
    for spec in ("json", TEXT_FORMAT):
        assert build_formatter(spec).format_items(got) == build_formatter(spec).format_items(lists)


@fuzz(500)
@given(st.binary(max_size=60), st.data())
def test_any_bytes_give_what_hiredis_gives_or_a_valueerror(blob: bytes, data: st.DataObject) -> None:
    """Never a crash, never a result hiredis disagrees with: arbitrary bytes, in chunks."""
    cuts = data.draw(st.lists(st.integers(1, max(1, len(blob) - 1)), max_size=4))
    reader = ReplyReader()
    bounds = [0, *sorted(set(cuts)), len(blob)]
    found = None
    try:
        for start, end in itertools.pairwise(bounds):
            if start < end and found is None:
                found = reader.feed(blob[start:end])
    except ValueError:
        return
    if found is None or blob[:1] in (b">", b"|"):
        return  # incomplete, or out-of-band elements first (skipped; hiredis would hand them over)
    kind, value = found
    parsed = outcome(hiredis_parse, blob)
    if kind == ENTRIES:
        assert list(value) == hiredis_entries(blob)
    elif kind == NIL:
        assert parsed is None
    elif kind == ERROR:
        assert isinstance(parsed, hiredis.ReplyError)
        assert str(parsed) == value.decode("utf-8", "replace")
    else:
        assert value == blob
        assert parsed is not False
        assert not isinstance(parsed, type)


# ------------------------------------------------------------------ through redis-py's connection


@pytest.fixture
async def client_factory(stream: RedisServer) -> AsyncIterator[Callable[..., Redis]]:
    """asyncio clients of the test's redis-server (URL query and options as given); each closed at teardown."""
    made: list[Redis] = []

    def make(query: str = "", **options: Any) -> Redis:
        made.append(Redis.from_url(stream.url + query, **options))
        return made[-1]

    yield make
    for redis in made:
        await redis.aclose()


@pytest.mark.integration
@pytest.mark.parametrize("protocol", [2, 3])
async def test_the_group_reader_reads_entries_in_place_on_a_real_connection(
    stream: RedisServer, client_factory: Callable[..., Redis], protocol: int
) -> None:
    expected = hiredis_parse(raw_reply(stream, "XRANGE", "s", "-", "+"))
    redis = client_factory(f"?protocol={protocol}")
    reader = GroupReader(redis, "s", "g", "c", batch_size=30, block_ms=50)
    first = await reader.new()
    assert type(first).__name__ == "ReplyEntries"
    second = await reader.new()
    assert list(first) + list(second) == expected
    assert list(await reader.new()) == []  # a nil reply, after block_ms
    assert await redis.ping()  # the connection is in a usable state


@pytest.mark.integration
async def test_a_client_that_decodes_replies_gets_them_decoded_as_before(
    stream: RedisServer, client_factory: Callable[..., Redis]
) -> None:
    reader = GroupReader(client_factory(decode_responses=True), "s", "g", "c", batch_size=2, block_ms=50)
    items = await reader.new()
    assert type(items) is list
    assert items[0][1][:4] == ["v", "1", "record", usual_fields(0)["record"]]


@pytest.mark.integration
async def test_an_error_reply_read_as_bytes_is_raised_and_the_connection_stays_usable(
    client_factory: Callable[..., Redis],
) -> None:
    redis = client_factory(max_connections=1)
    reader = GroupReader(redis, "s", "nogroup", "c", batch_size=10, block_ms=50)
    with pytest.raises(ResponseError, match="NOGROUP"):
        await reader.new()
    assert await redis.xlen("s") == 54


@pytest.mark.integration
async def test_a_connection_killed_while_blocked_is_a_connection_error_and_is_dropped(
    stream: RedisServer, client_factory: Callable[..., Redis]
) -> None:
    reader = GroupReader(client_factory(max_connections=2), "s", "g", "c", batch_size=100, block_ms=60_000)
    await reader.ack_items(await reader.new())  # everything, acknowledged: the next read blocks
    blocked = asyncio.create_task(reader.new())

    def blocked_in_xreadgroup() -> bool:
        with stream.client() as client:
            return any(c["cmd"] == "xreadgroup" for c in client.client_list())

    await asyncio.to_thread(wait_until, blocked_in_xreadgroup, timeout=10, what="XREADGROUP blocked")
    with stream.client() as client:
        assert client.client_kill_filter(_type="normal", skipme=True) >= 1
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(blocked, 10)
    # the next read takes a new connection and reads on
    with stream.client() as client:
        client.xadd("s", usual_fields(500))  # type: ignore[arg-type]
    items = await reader.new()
    assert [json.loads(item[1][3])["seq"] for item in items] == [500]
