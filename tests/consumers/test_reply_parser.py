"""Read replies kept as bytes (``ReplyReader``, ``ReplyEntries``): what hiredis makes of the same bytes, in any chunks.

The consumer reads its XREADGROUP replies this way (consumers.group_reader); the
renderers then read the entries in place.  Every check here compares with
hiredis, the parser redis-py would have used, on replies a real redis-server
sent (RESP2 and RESP3) and on generated ones; the parsing checks run on the
C reader and on its Python reference (consumers.reply_parser), and the two are
compared with each other, refusals included, message for message.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, InvalidResponse, ResponseError

from consumers import read_replies
from consumers.formatting import build_formatter
from consumers.group_reader import GroupReader
from consumers.read_replies import ReplyReader, bulk_ids, producer_runs, producer_runs_python
from consumers.reply_parser import ReplyReaderPython
from relay.common.redis_protocol import pack_command
from tests.support.polling import wait_until
from tests.support.realredis import RedisServer
from tests.support.strategies import fuzz

needs_c = pytest.mark.skipif(read_replies.IMPLEMENTATION != "c", reason="the C extension is not built here")

#: The readers of a reply's bytes: the C one (where built) and its Python reference.
READERS = [
    pytest.param(ReplyReaderPython, id="python"),
    pytest.param(ReplyReader, id="c", marks=needs_c),
]
by_reader = pytest.mark.parametrize("reader_type", READERS)
ReaderType = Callable[[], Any]

ENTRIES, NIL, ERROR, OTHER = 0, 1, 2, 3
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s [%(client)s %(entry_id)s]"


#: The producer token of the entries fill() writes with a seq.
TOKEN = "00000000000000a1"


def usual_fields(n: int, client: str = "10.0.0.1:5000", seq: str | None = None) -> dict[str, str | bytes]:
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
    fields = {"v": "1", "record": json.dumps(record), "client": client, "catcher": "c1", "received": "1700000000.5"}
    return fields if seq is None else {**fields, "seq": seq}


def fill(server: RedisServer) -> None:
    """Usual entries, the last 20 of the first 40 with a seq (TOKEN:1 to 20), then unusual ones among them
    (other fields, other order, not JSON)."""
    with server.client() as client:
        for n in range(40):
            seq = f"{TOKEN}:{n - 19}" if n >= 20 else None
            client.xadd("s", usual_fields(n, client=f"10.0.0.{n % 3}:5000", seq=seq))  # type: ignore[arg-type]
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


def feed_in_chunks(data: bytes, cuts: list[int], reader_type: ReaderType = ReplyReader) -> tuple[int, Any]:
    """Feed ``data`` cut at ``cuts`` to a new reader; None must come back until the last chunk."""
    reader = reader_type()
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


@by_reader
def test_a_real_reply_in_any_chunks_gives_the_entries_hiredis_gives(read_reply: bytes, reader_type: ReaderType) -> None:
    expected = hiredis_entries(read_reply)
    assert len(expected) == 54
    for cuts in cut_points(read_reply):
        kind, entries = feed_in_chunks(read_reply, cuts, reader_type)
        assert kind == ENTRIES
        assert len(entries) == len(expected)
        assert list(entries) == expected


@needs_c
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


@needs_c
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


@needs_c
def test_producer_runs_of_a_real_reply_read_in_place_are_those_of_hiredis_lists(read_reply: bytes) -> None:
    lists = hiredis_entries(read_reply)
    _, entries = feed_in_chunks(read_reply, [])
    expected = [(0, 20, None, 0), (20, 20, TOKEN.encode(), 1), (40, 14, None, 0)]
    assert producer_runs(entries) == producer_runs(lists) == producer_runs_python(lists) == expected
    assert producer_runs(entries[30:]) == [(0, 10, TOKEN.encode(), 11), (10, 14, None, 0)]


@needs_c
def test_text_lines_with_a_record_check_callable_sees_each_record() -> None:
    record = str(usual_fields(1)["record"]).encode()
    data = encode([[b"1-1", usual_list(record)]])
    _, entries = feed_in_chunks(data, [])
    formatter = build_formatter("%(name)s %(message)s")
    seen: list[bytes] = []

    def check(record: bytes) -> bool:
        seen.append(record)
        return True

    assert read_replies.text_lines is not None
    plan = formatter.plan  # type: ignore[attr-defined]
    metadata = formatter._metadata.texts  # type: ignore[attr-defined]
    second = formatter._formatter.second_bytes  # type: ignore[attr-defined]
    assert read_replies.text_lines(entries, plan, metadata, second, check) == ["app.db query 1 took 1 ms ✓\n".encode()]
    assert seen == [record]


@by_reader
@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_a_timed_out_block_is_nil(stream: RedisServer, resp3: bool, reader_type: ReaderType) -> None:
    raw_reply(stream, "XREADGROUP", "GROUP", "g", "c", "COUNT", 1000, "STREAMS", "s", ">")
    data = raw_reply(stream, "XREADGROUP", "GROUP", "g", "c", "BLOCK", 1, "STREAMS", "s", ">", resp3=resp3)
    assert hiredis_parse(data) is None
    for cuts in cut_points(data):
        assert feed_in_chunks(data, cuts, reader_type) == (NIL, None)


@by_reader
def test_an_error_reply_is_its_message(stream: RedisServer, reader_type: ReaderType) -> None:
    data = raw_reply(stream, "XREADGROUP", "GROUP", "nogroup", "c", "STREAMS", "s", ">")
    for cuts in cut_points(data):
        kind, message = feed_in_chunks(data, cuts, reader_type)
        assert kind == ERROR
        assert message.startswith(b"NOGROUP ")
        assert b"\r" not in message


@pytest.mark.parametrize(
    "command",
    [("XAUTOCLAIM", "s", "g", "c2", 0, "0"), ("XRANGE", "s", "-", "+", "COUNT", 3), ("PING",), ("XLEN", "s")],
    ids=["xautoclaim", "xrange", "ping", "xlen"],
)
@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
@by_reader
def test_any_other_reply_comes_back_whole_for_a_general_parser(
    stream: RedisServer, command: tuple[str | int, ...], resp3: bool, reader_type: ReaderType
) -> None:
    raw_reply(stream, "XREADGROUP", "GROUP", "g", "c", "COUNT", 5, "STREAMS", "s", ">")  # pending, for XAUTOCLAIM
    data = raw_reply(stream, *command, resp3=resp3)
    for cuts in cut_points(data):
        assert feed_in_chunks(data, cuts, reader_type) == (OTHER, data)


@by_reader
def test_a_push_before_the_reply_is_skipped(read_reply: bytes, reader_type: ReaderType) -> None:
    push = b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"
    data = push + push + read_reply
    for cuts in [[], [3], [len(push)], [len(push) + 2], list(range(1, 80))]:
        kind, entries = feed_in_chunks(data, cuts, reader_type)
        assert kind == ENTRIES
        assert list(entries) == hiredis_entries(read_reply)


@pytest.mark.parametrize(
    "data",
    [b"?x\r\n", b"*1\r\n?", b"$3\r\nabcd\r\n", b"*x\r\n", b"$-2\r\n", b"$99999999999999\r\n", b":1\n"],
    ids=["unknown-type", "unknown-inner", "bulk-overrun", "bad-length", "negative-bulk", "huge-length", "bare-newline"],
)
@by_reader
def test_bytes_that_are_not_resp_are_refused(data: bytes, reader_type: ReaderType) -> None:
    with pytest.raises(ValueError, match="malformed reply"):
        feed_in_chunks(data, [], reader_type)


@by_reader
def test_bytes_past_the_reply_are_refused(read_reply: bytes, reader_type: ReaderType) -> None:
    for data in (read_reply + b"+OK\r\n", b"*-1\r\n+OK\r\n", b"-ERR x\r\n:1\r\n", b":1\r\n:2\r\n"):
        with pytest.raises(ValueError, match="bytes after the reply"):
            feed_in_chunks(data, [], reader_type)


@by_reader
def test_a_reader_reads_one_reply(reader_type: ReaderType) -> None:
    reader = reader_type()
    assert reader.feed(b"*-1\r\n") == (NIL, None)
    with pytest.raises(ValueError, match="read already"):
        reader.feed(b"*-1\r\n")


# ------------------------------------------------------------------ generated replies


def usual_list(record: bytes, entry_client: bytes = b"c:1", seq: bytes | None = None) -> list[bytes]:
    fields = [b"v", b"1", b"record", record, b"client", entry_client, b"catcher", b"k", b"received", b"1.5"]
    return fields if seq is None else [*fields, b"seq", seq]


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
names = st.sampled_from([b"v", b"1", b"record", b"client", b"catcher", b"received", b"seq", b"x", b""])
values = st.binary(max_size=40) | st.sampled_from([b"{}", b'{"a": 1}', b'{"msg": "\\u00e9"}', b"\r\n"])
seqs = st.none() | st.sampled_from([b"0123456789abcdef:1", b"0123456789abcdef:2", b"0123456789ABCDEF:1", b""])
usual = st.builds(
    lambda i, r, c, q: [i, usual_list(r, c, q)], ids, values, st.binary(max_size=6), seqs | st.binary(max_size=20)
)
odd = st.one_of(
    st.tuples(ids | st.binary(max_size=5), st.lists(names | values, max_size=12) | st.none()).map(list),
    st.lists(st.binary(max_size=4), max_size=3),
    st.tuples(ids, st.lists(st.integers(-5, 5) | st.binary(max_size=3), max_size=4)).map(list),
)


def outcome(function: Any, *args: Any) -> object:
    try:
        return function(*args)
    except Exception as exc:
        return type(exc)


def as_redis_sends(entry: Any) -> bool:
    """Whether ``entry`` (as :func:`encode` takes it) is what Redis sends: [bulk id, [bulk, ...] of pairs, or nil]."""
    if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], bytes):
        return False
    fields = entry[1]
    return fields is None or (
        isinstance(fields, list) and len(fields) % 2 == 0 and all(isinstance(value, bytes) for value in fields)
    )


@by_reader
@fuzz(300)
@given(st.lists(usual | odd, max_size=12), st.booleans(), st.data())
def test_generated_replies_match_hiredis_in_any_chunks(
    reader_type: ReaderType, entries: list[Any], resp3: bool, data: st.DataObject
) -> None:
    """Entries of Redis's shape come out as hiredis makes them; the first of any other shape is refused, by index."""
    raw = encode(entries, resp3=resp3)
    cuts = data.draw(st.lists(st.integers(1, max(1, len(raw) - 1)), max_size=6))
    refused = [index for index, entry in enumerate(entries) if not as_redis_sends(entry)]
    if refused:
        with pytest.raises(ValueError, match=f"^malformed reply from Redis: stream entry {refused[0]}: "):
            feed_in_chunks(raw, cuts, reader_type)
        return
    kind, got = feed_in_chunks(raw, cuts, reader_type)
    lists = hiredis_entries(raw)
    assert kind == ENTRIES
    assert list(got) == lists
    assert bulk_ids(got) == bulk_ids(lists)
    assert producer_runs(got) == producer_runs(lists) == producer_runs_python(lists)
    for spec in ("json", TEXT_FORMAT):
        assert build_formatter(spec).format_items(got) == build_formatter(spec).format_items(lists)


@by_reader
@fuzz(500)
@given(st.binary(max_size=60), st.data())
def test_any_bytes_give_what_hiredis_gives_or_a_valueerror(
    reader_type: ReaderType, blob: bytes, data: st.DataObject
) -> None:
    """Never a crash, never a result hiredis disagrees with: arbitrary bytes, in chunks."""
    cuts = data.draw(st.lists(st.integers(1, max(1, len(blob) - 1)), max_size=4))
    reader = reader_type()
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


def outcomes(reader_type: ReaderType, data: bytes, cuts: list[int]) -> list[object]:
    """A new reader's answer to each chunk of ``data`` cut at ``cuts`` (entries as lists), up to a result or error."""
    reader = reader_type()
    answers: list[object] = []
    bounds = [0, *sorted(set(cuts)), len(data)]
    for start, end in itertools.pairwise(bounds):
        if start == end:
            continue
        try:
            found = reader.feed(data[start:end])
        except ValueError as exc:
            answers.append(("ValueError", str(exc)))
            break
        answers.append(found if found is None or found[0] != ENTRIES else (ENTRIES, list(found[1])))
        if found is not None:
            break
    return answers


@needs_c
@fuzz(400)
@given(st.lists(usual | odd, max_size=6), st.booleans(), st.binary(max_size=3), st.data())
def test_the_c_reader_answers_as_its_python_reference_chunk_for_chunk(
    entries: list[Any], resp3: bool, noise: bytes, data: st.DataObject
) -> None:
    """The same answer to every chunk, refusals' messages included, for replies with some bytes changed."""
    raw = bytearray(encode(entries, resp3=resp3))
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(0, len(raw)))
        raw[at : at + data.draw(st.integers(0, 2))] = noise
    blob = bytes(raw)
    cuts = data.draw(st.lists(st.integers(1, max(1, len(blob) - 1)), max_size=6))
    assert outcomes(ReplyReader, blob, cuts) == outcomes(ReplyReaderPython, blob, cuts)


# ------------------------------------------------------------------ entries of types Redis never sends there

ID = b"$3\r\n1-1\r\n"
FIELD = b"$1\r\nv\r\n"
GOOD_ENTRY = b"*2\r\n" + ID + b"*2\r\n" + FIELD + FIELD

#: One element of each RESP2 and RESP3 type, and the words the refusal uses for it.
ELEMENTS = {
    "set": (b"~1\r\n$1\r\nx\r\n", "a set ('~')"),
    "map": (b"%1\r\n$1\r\nx\r\n$1\r\ny\r\n", "a map ('%')"),
    "attribute": (b"|1\r\n$1\r\nx\r\n$1\r\ny\r\n", "an attribute ('|')"),
    "push": (b">1\r\n$1\r\nx\r\n", "a push ('>')"),
    "double": (b",1.5\r\n", "a double (',')"),
    "big-number": (b"(123456789012345678901234567890\r\n", "a big number ('(')"),
    "boolean": (b"#t\r\n", "a boolean ('#')"),
    "verbatim": (b"=7\r\ntxt:abc\r\n", "a verbatim string ('=')"),
    "blob-error": (b"!3\r\nerr\r\n", "a blob error ('!')"),
    "null": (b"_\r\n", "a null ('_')"),
    "integer": (b":1\r\n", "an integer (':')"),
    "long-integer": (b":123456789012345678901\r\n", "an integer (':')"),
    "simple-string": (b"+1-1\r\n", "a simple string ('+')"),
    "error": (b"-ERR x\r\n", "an error ('-')"),
    "null-bulk": (b"$-1\r\n", "a bulk string ('$')"),
    "null-array": (b"*-1\r\n", "an array ('*')"),
    "array": (b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n", "an array ('*')"),
    "bulk": (ID, "a bulk string ('$')"),
}

#: Where an element goes in an entry, how the refusal names the place, and what Redis sends there.
FIELDS_OF = b"*2\r\n" + ID + b"*2\r\n"
PLACES: dict[str, tuple[Callable[[bytes], bytes], str, str]] = {
    "entry": (lambda e: e, "the entry is", "an array of 2 (id, fields)"),
    "id": (lambda e: b"*2\r\n" + e + b"*2\r\n" + FIELD + FIELD, "its id is", "a bulk string"),
    "field-list": (lambda e: b"*2\r\n" + ID + e, "its field list is", "an array of field-value pairs, or a null"),
    "field-name": (lambda e: FIELDS_OF + e + FIELD, "element 0 of its field list is", "a bulk string"),
    "field-value": (lambda e: FIELDS_OF + FIELD + e, "element 1 of its field list is", "a bulk string"),
}

#: What Redis does send at each place (t_stream.c): all but these must be refused.
SENT_BY_REDIS = {("id", "bulk"), ("field-name", "bulk"), ("field-value", "bulk")}
SENT_BY_REDIS |= {("field-list", "null"), ("field-list", "null-array"), ("field-list", "array")}
#: Nulls of the type a place takes are refused for their length (-1), not their type.
NULL_WORDS = {("entry", "null-array"): "a null array"}
NULL_WORDS |= {(place, "null-bulk"): "a null bulk string" for place in ("id", "field-name", "field-value")}


def reply_of(*entries: bytes, resp3: bool = False) -> bytes:
    head = b"%1\r\n$1\r\ns\r\n" if resp3 else b"*1\r\n*2\r\n$1\r\ns\r\n"
    return head + b"*%d\r\n" % len(entries) + b"".join(entries)


REFUSED = [
    pytest.param(place, element, id=f"{place}-{element}")
    for place in PLACES
    for element in ELEMENTS
    if (place, element) not in SENT_BY_REDIS and not (place == "entry" and element == "array")
]


@by_reader
@pytest.mark.parametrize(("place", "element"), REFUSED)
def test_a_type_redis_never_sends_inside_an_entry_is_refused_as_the_reply_is_read(
    reader_type: ReaderType, place: str, element: str
) -> None:
    """Refused by feed(), naming the entry, the place and the type, in any chunks; never accepted to fail later.

    Before, feed() accepted these and building the entry (an item, a
    renderer's fallback, its XACK id) then raised, or made an XACK id of
    whatever was there (b"None", the digits of an int).
    """
    build, words, wanted = PLACES[place]
    bytes_, found = ELEMENTS[element]
    found = NULL_WORDS.get((place, element), found)
    data = reply_of(GOOD_ENTRY, build(bytes_), GOOD_ENTRY)
    message = f"malformed reply from Redis: stream entry 1: {words} {found}; Redis sends {wanted} there"
    for cuts in ([], list(range(1, len(data)))):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            feed_in_chunks(data, cuts, reader_type)
    # The reply without that entry is read as before.
    kind, entries = feed_in_chunks(reply_of(GOOD_ENTRY, GOOD_ENTRY), [], reader_type)
    assert (kind, list(entries)) == (ENTRIES, [[b"1-1", [b"v", b"v"]]] * 2)


@by_reader
@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (b"*1\r\n" + ID, "the entry is an array of 1 elements; Redis sends an array of 2 (id, fields) there"),
        (b"*3\r\n" + ID + b"*0\r\n" + ID, "the entry is an array of 3 elements; Redis sends an array of 2"),
        (b"*2\r\n" + ID + b"*1\r\n" + FIELD, "its field list is an array of 1 elements; Redis sends an array of field"),
        (b"*2\r\n" + ID + b"*-2\r\n", "its field list is an array of -2 elements"),
        (b"*2\r\n$-2\r\n", "its id is a bulk string of length -2"),
        (b"*2\r\n" + ID + b"_x\r\n", "its field list has a malformed header ('_')"),
        (b"*2\r\n$x\r\n", "its id has a malformed header ('$')"),
        (b"*2\r\n" + ID + b"*2\r\n" + FIELD + b"$1\r\nvv\r\n", "element 1 of its field list does not end where"),
        (b"*2\r\n" + ID + b"?\r\n", "its field list is the byte 0x3f, no RESP type; Redis sends an array of field"),
    ],
    ids=[
        "entry-of-1",
        "entry-of-3",
        "odd-fields",
        "negative-count",
        "negative-length",
        "bad-null",
        "bad-header",
        "bulk-overrun",
        "unknown-type",
    ],
)
def test_an_entry_of_another_shape_is_refused_as_the_reply_is_read(
    reader_type: ReaderType, entry: bytes, message: str
) -> None:
    data = reply_of(GOOD_ENTRY, entry)
    for cuts in ([], list(range(1, len(data)))):
        with pytest.raises(ValueError, match=f"^malformed reply from Redis: stream entry 1: {re.escape(message)}"):
            feed_in_chunks(data, cuts, reader_type)


@by_reader
@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_a_trimmed_pending_entry_is_none_as_hiredis_gives_it(
    redis_server: RedisServer, resp3: bool, reader_type: ReaderType
) -> None:
    """Redis 7 sends a trimmed pending entry's fields as ``_`` in RESP3 (``*-1`` in RESP2): [id, None].

    The C reader used to accept the ``_`` and raise when the entry was built.
    """
    with redis_server.client() as client:
        first = client.xadd("s", {"a": "b"})
        client.xadd("s", {"c": "d"})
        client.xgroup_create("s", "g", id="0")
        client.xreadgroup("g", "c", {"s": ">"})
        client.xdel("s", first)
    data = raw_reply(redis_server, "XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "0", resp3=resp3)
    assert (b"_\r\n" in data) is resp3
    expected = hiredis_entries(data)
    assert expected[0][1] is None
    for cuts in cut_points(data):
        kind, entries = feed_in_chunks(data, cuts, reader_type)
        assert kind == ENTRIES
        assert list(entries) == expected
    assert bulk_ids(entries) == bulk_ids(expected)


@needs_c
def test_a_slice_of_a_reply_without_entries_is_empty() -> None:
    """A reply of no entries has no rows: its slices point at none (NULL + 0 was undefined behaviour)."""
    _, entries = feed_in_chunks(reply_of(), [])
    assert len(entries) == 0
    for window in (slice(0, None), slice(5, 9), slice(None, None, -1)):
        assert list(entries[window]) == []
    assert bulk_ids(entries[0:]) == b""


@needs_c
def test_xack_ids_are_packed_at_every_length_of_digits() -> None:
    """Ids of 1 to 7 digits of length, at both ends of each: the digits written by hand (relay/common/_resp_bulk.h)."""
    ids = [b"7" * n for digits in range(1, 8) for n in (10 ** (digits - 1), 10**digits - 1)]
    data = reply_of(*(b"*2\r\n$%d\r\n%b\r\n*-1\r\n" % (len(i), i) for i in ids))
    _, entries = feed_in_chunks(data, [])
    assert bulk_ids(entries) == b"".join(b"$%d\r\n%b\r\n" % (len(i), i) for i in ids)


# ------------------------------------------------------------------ through redis-py's connection


class ScriptedRedis:
    """A loopback server that answers like Redis, but each XREADGROUP with the next of ``replies`` (bytes as given).

    Every other command gets ``+OK`` (HELLO its map): enough for redis-py to
    connect, so a reply Redis would never send reaches the consumer's reader
    as it would from a hostile server.
    """

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedRedis:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readline()
                if not head:
                    return
                args = []
                for _ in range(int(head[1:])):
                    size = int((await reader.readline())[1:])
                    args.append((await reader.readexactly(size + 2))[:-2])
                command = args[0].upper()
                if command == b"XREADGROUP":
                    writer.write(self.replies.pop(0))
                elif command == b"HELLO":
                    writer.write(b"%1\r\n$5\r\nproto\r\n:" + args[1] + b"\r\n")
                else:
                    writer.write(b"+OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (PLACES["field-list"][0](ELEMENTS["map"][0]), "its field list is a map"),
        (PLACES["field-value"][0](ELEMENTS["double"][0]), "element 1 of its field list is a double"),
        (PLACES["field-name"][0](ELEMENTS["integer"][0]), "element 0 of its field list is an integer"),
        (PLACES["field-value"][0](ELEMENTS["error"][0]), "element 1 of its field list is an error"),
        (PLACES["id"][0](ELEMENTS["boolean"][0]), "its id is a boolean"),
        (PLACES["id"][0](ELEMENTS["null"][0]), "its id is a null"),
        (PLACES["entry"][0](ELEMENTS["integer"][0]), "the entry is an integer"),
        (b"*3\r\n" + ID + b"*0\r\n" + ID, "the entry is an array of 3 elements"),
    ],
    ids=["map-fields", "double-value", "integer-name", "error-value", "boolean-id", "null-id", "integer-entry", "of-3"],
)
async def test_an_entry_redis_never_sends_is_an_invalid_response_and_the_next_read_reads_on(
    entry: bytes, words: str, protocol: int
) -> None:
    """The consumer's read raises redis-py's InvalidResponse (a RedisError: its retries handle it), naming the entry.

    With the C reader (the bytes refused as read, the connection dropped) and
    without it (hiredis's lists refused by check_items): before, the read
    returned the entry and rendering or acknowledging it failed later, outside
    the consumer's retries.  The read after it (of our own pending entries)
    gives a valid reply's entries as usual.
    """
    replies = [reply_of(GOOD_ENTRY, entry, resp3=protocol == 3), reply_of(GOOD_ENTRY, resp3=protocol == 3)]
    async with ScriptedRedis(replies) as server:
        redis = Redis.from_url(server.url, protocol=protocol)
        try:
            reader = GroupReader(redis, "s", "g", "c", batch_size=10, block_ms=50)
            with pytest.raises(InvalidResponse, match=f"^malformed reply from Redis: stream entry 1: {words}"):
                await reader.new()
            assert list(await reader.new()) == [[b"1-1", [b"v", b"v"]]]
            assert server.replies == []
        finally:
            await redis.aclose()


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


@needs_c
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
