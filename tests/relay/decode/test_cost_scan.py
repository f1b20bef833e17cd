"""The opcode pre-scan: every honest pickle passes, every memory bomb and foreign opcode is refused.

``scan`` never builds an object, so every hostile input here is safe to hand
to it directly (none of them is ever given to ``pickle.loads``).
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import io
import logging
import logging.handlers
import pathlib
import pickle
import pickletools
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from relay.decode import cost_scan
from relay.decode.cost_scan import NAMES_CLASSES, SHARES_OBJECTS, UnsafePickle, scan_python

Scan = Callable[[bytes], int]
IMPLEMENTATIONS = {"python": scan_python, "c": cost_scan.scan if cost_scan.IMPLEMENTATION == "c" else None}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def scan(request: pytest.FixtureRequest) -> Scan:
    """Each test runs against both implementations (the C one where it is built)."""
    implementation = IMPLEMENTATIONS[request.param]
    if implementation is None:
        pytest.skip("the C scan is not built here")
    return implementation


PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))
FORBIDDEN_OPCODES = ["PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER", "READONLY_BUFFER"]
OPCODE = {op.name: op.code.encode("latin-1") for op in pickletools.opcodes}


class Account:
    def __init__(self) -> None:
        self.id = 7
        self.owner = "Zoë"


def _record(**extra: Any) -> dict[str, Any]:
    """What SocketHandler.makePickle pickles for a record, with ``extra`` merged in."""
    record = logging.LogRecord("shop.orders", logging.INFO, __file__, 42, "order %s", ("A-1",), None)
    fields = dict(record.__dict__)
    fields.update(msg=record.getMessage(), args=None)
    fields.update(extra)
    return fields


def _records() -> dict[str, dict[str, Any]]:
    shared = {"sku": "A-1"}
    loop: list[Any] = ["loop"]
    loop.append(loop)
    return {
        "plain": _record(),
        "non-ascii": _record(msg="日本語 😀 e\u0301", name="支付.服务"),
        "values": _record(
            when=dt.datetime(2024, 2, 29, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            day=dt.date(2000, 1, 1),
            amount=decimal.Decimal("-12.50"),
            ident=uuid.UUID(int=12345),
            blob=bytes(range(256)),
            mutable=bytearray(b"xyz"),
            members={"a", "b"},
            frozen=frozenset({1}),
            path=pathlib.PurePosixPath("/var/log/x"),
            ordered=collections.OrderedDict(a=1),
            account=Account(),
            floats=[0.1, -0.0, 1e308, float("inf")],
            ints=[0, 255, 256, 65535, 65536, -1, 2**31, -(2**31) - 1, 2**64, -(2**200)],
            flags=[True, False, None],
        ),
        "shared-and-recursive": _record(first=shared, second=shared, loop=loop),
        # 5000 distinct strings: memo indices beyond 255 (LONG_BINPUT / long PUT lines).
        "many-memo-entries": _record(words=[f"word-{n}" for n in range(5000)]),
        # A big string: BINUNICODE with a 4-byte length, and FRAMEs at protocol 4+.
        "big-string": _record(msg="x" * 200_000),
        "deep": _record(nested=[[[[[[{"k": ("v",)}]]]]]]),
    }


RECORDS = _records()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_stdlib_pickle_of_varied_records_is_accepted(scan: Scan, protocol: int) -> None:
    for name, record in RECORDS.items():
        for payload in (
            pickle.dumps(record, protocol),
            pickle._dumps(record, protocol),  # type: ignore[attr-defined]  # the pure-Python pickler
            pickletools.optimize(pickle.dumps(record, protocol)),
        ):
            assert scan(payload) & ~(NAMES_CLASSES | SHARES_OBJECTS) == 0, name


def test_socket_handler_frames_are_accepted(scan: Scan) -> None:
    handler = logging.handlers.SocketHandler("127.0.0.1", 9)
    try:
        record = logging.LogRecord("n", logging.ERROR, __file__, 1, "boom %d", (1,), None)
        record.extra_value = {"when": dt.datetime(2024, 1, 1), "ids": list(range(1000))}
        frame = handler.makePickle(record)
    finally:
        handler.close()

    scan(frame[4:])


def test_bytearray8_of_protocol_5_is_accepted(scan: Scan) -> None:
    payload = pickle.dumps({"msg": "m", "buf": bytearray(b"abc")}, 5)
    assert OPCODE["BYTEARRAY8"] in payload

    scan(payload)


# --------------------------------------------------------------------------- memo bombs


def long_binput(index: int) -> bytes:
    return b"\x80\x02N" + OPCODE["LONG_BINPUT"] + index.to_bytes(4, "little") + b"."


def put(text: bytes) -> bytes:
    return b"N" + OPCODE["PUT"] + text + b"\n."


@pytest.mark.parametrize("index", [2**31, 2**32 - 1, 1_000_000])
def test_long_binput_with_a_huge_index_is_refused(scan: Scan, index: int) -> None:
    with pytest.raises(UnsafePickle, match=f"memo index {index} out of range at offset 3"):
        scan(long_binput(index))


@pytest.mark.parametrize(
    "text",
    [b"9" * 30, b"2147483648", b"4294967295", b"99999999999", b"1000"],
    ids=["30-digits", "2**31", "2**32-1", "11-digits", "beyond-the-pickle"],
)
def test_put_with_a_huge_index_is_refused(scan: Scan, text: bytes) -> None:
    with pytest.raises(UnsafePickle, match=r"memo index .* out of range at offset 1"):
        scan(put(text))


@pytest.mark.parametrize("text", [b"-1", b"+5", b" 5", b"0x10", b"1e3", b"", b"\xd9\xa1"])
def test_put_with_a_malformed_index_is_refused(scan: Scan, text: bytes) -> None:
    with pytest.raises(UnsafePickle, match="memo index"):
        scan(put(text))


def test_memo_index_up_to_the_pickle_length_is_accepted(scan: Scan) -> None:
    largest = long_binput(len(long_binput(0)))
    scan(largest)
    with pytest.raises(UnsafePickle, match="memo index"):
        scan(long_binput(len(largest) + 1))

    size = len(put(b"5"))
    scan(put(str(size).encode()))
    with pytest.raises(UnsafePickle, match="memo index"):
        scan(put(str(size + 1).encode()))


def test_memo_bomb_after_honest_content_is_found(scan: Scan) -> None:
    honest = pickle.dumps(RECORDS["values"], 2)
    bomb = honest[:-1] + OPCODE["LONG_BINPUT"] + (2**31).to_bytes(4, "little") + b"."

    with pytest.raises(UnsafePickle, match=f"memo index {2**31}"):
        scan(bomb)


def test_memo_bomb_hidden_behind_a_string_that_looks_like_opcodes_is_found(scan: Scan) -> None:
    # The string's bytes spell a STOP; the scan must skip string payloads, not read them as opcodes.
    decoy = "..."
    payload = (
        b"\x80\x02" + OPCODE["BINUNICODE"] + len(decoy).to_bytes(4, "little") + decoy.encode()
        + OPCODE["LONG_BINPUT"] + (2**31).to_bytes(4, "little") + b"."
    )  # fmt: skip

    with pytest.raises(UnsafePickle, match="memo index"):
        scan(payload)


# --------------------------------------------------------------------------- opcodes never allowed


MINIMAL_FORBIDDEN = {
    "PERSID": b"Prow-7\n.",
    "BINPERSID": b"\x80\x02X\x05\x00\x00\x00row-7Q.",
    "EXT1": b"\x80\x02\x82\x01.",
    "EXT2": b"\x80\x02\x83\x01\x00.",
    "EXT4": b"\x80\x02\x84\x01\x00\x00\x00.",
    "NEXT_BUFFER": b"\x80\x05\x97.",
    "READONLY_BUFFER": b"\x80\x05C\x01x\x98.",
}


@pytest.mark.parametrize("name", FORBIDDEN_OPCODES)
def test_forbidden_opcode_is_refused_by_name(scan: Scan, name: str) -> None:
    payload = MINIMAL_FORBIDDEN[name]
    assert any(op.name == name for op, _, _ in pickletools.genops(payload))

    with pytest.raises(UnsafePickle, match=f"opcode {name} is not allowed"):
        scan(payload)


class _Row:
    pass


class _PersistentPickler(pickle.Pickler):
    def persistent_id(self, obj: object) -> str | None:
        return "row-7" if isinstance(obj, _Row) else None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stdlib_persistent_id_pickles_are_refused(scan: Scan, protocol: int) -> None:
    buffer = io.BytesIO()
    _PersistentPickler(buffer, protocol).dump({"msg": "m", "row": _Row()})

    with pytest.raises(UnsafePickle, match="PERSID is not allowed"):
        scan(buffer.getvalue())


def test_stdlib_out_of_band_buffer_pickle_is_refused(scan: Scan) -> None:
    buffers: list[pickle.PickleBuffer] = []
    record = {"msg": "m", "buf": pickle.PickleBuffer(b"data")}
    payload = pickle.dumps(record, 5, buffer_callback=buffers.append)

    with pytest.raises(UnsafePickle, match="NEXT_BUFFER is not allowed"):
        scan(payload)


UNKNOWN_CODES = sorted(set(range(256)) - {ord(op.code) for op in pickletools.opcodes})


def test_there_are_unknown_opcodes_to_test() -> None:
    assert len(UNKNOWN_CODES) > 150
    assert 0x00 in UNKNOWN_CODES
    assert 0xFF in UNKNOWN_CODES


@pytest.mark.parametrize("code", UNKNOWN_CODES, ids=[f"0x{c:02x}" for c in UNKNOWN_CODES])
def test_unknown_opcode_is_refused(scan: Scan, code: int) -> None:
    with pytest.raises(UnsafePickle, match=f"unknown opcode 0x{code:02x} at offset 2"):
        scan(b"\x80\x02" + bytes([code]) + b".")


# --------------------------------------------------------------------------- malformed streams


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_proper_prefix_is_truncated(scan: Scan, protocol: int) -> None:
    payload = pickle.dumps(RECORDS["values"], protocol)

    for cut in range(len(payload)):
        with pytest.raises(UnsafePickle, match="truncated"):
            scan(payload[:cut])


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"N",
        b"\x80\x02",
        b"X\x05\x00\x00\x00abc",  # BINUNICODE shorter than declared
        b"X\xff\xff\xff\xff.",  # BINUNICODE declaring 4 GiB
        b"\x8d" + (2**63).to_bytes(8, "little") + b".",  # BINUNICODE8 declaring 8 EiB
        b"\x8e" + (2**40).to_bytes(8, "little") + b".",  # BINBYTES8
        b"\x96" + (2**40).to_bytes(8, "little") + b".",  # BYTEARRAY8
        b"\x8c\xffabc.",  # SHORT_BINUNICODE
        b"\x8a\x09\x00.",  # LONG1
        b"Vno newline.",  # UNICODE line without its newline
        b"cos\nsystem",  # GLOBAL without the second newline
        b"J\x01\x00.",  # BININT cut inside its argument
        b"r\x01\x00",  # LONG_BINPUT cut inside its index
        b"Np12",  # PUT without its newline
    ],
)
def test_truncated_or_overlong_arguments_are_refused(scan: Scan, payload: bytes) -> None:
    with pytest.raises(UnsafePickle, match="truncated"):
        scan(payload)


@pytest.mark.parametrize("name", ["BINSTRING", "LONG4"])
def test_negative_lengths_are_refused(scan: Scan, name: str) -> None:
    with pytest.raises(UnsafePickle, match=f"negative length in {name}"):
        scan(OPCODE[name] + (-1).to_bytes(4, "little", signed=True) + b".")


def test_unsafe_pickle_is_a_value_error(scan: Scan) -> None:
    with pytest.raises(ValueError, match="truncated"):
        scan(b"")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_flag_tells_whether_a_pickle_names_a_class(scan: Scan, protocol: int) -> None:
    plain = {"msg": "m", "args": None, "n": 1, "f": 1.5, "t": (1, "x"), "l": [None, True], "d": {"k": "v"}}
    assert scan(pickle.dumps(plain, protocol)) == 0
    assert scan(pickle.dumps({**plain, "when": dt.datetime(2024, 1, 1)}, protocol)) == NAMES_CLASSES
    assert scan(pickle.dumps({**plain, "counts": collections.Counter("ab")}, protocol)) & NAMES_CLASSES


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_flag_tells_whether_a_pickle_refers_to_an_object_twice(scan: Scan, protocol: int) -> None:
    text = "x" * 100
    assert scan(pickle.dumps({"a": text, "b": "".join(["x"] * 100)}, protocol)) == 0  # equal, not the same
    assert scan(pickle.dumps({"a": text, "b": text}, protocol)) == SHARES_OBJECTS
    assert scan(b"(S'x'\n2l.") == SHARES_OBJECTS  # DUP
    assert scan(b"(S'x'\np0\ng0\nl.") == SHARES_OBJECTS  # GET


# --------------------------------------------------------------------------- the cost model


def record_of(value_ops: bytes) -> bytes:
    """``{"v": <value_ops>}`` in protocol 4."""
    return b"\x80\x04}\x8c\x01v" + value_ops + b"s."


def int_key(n: int) -> bytes:
    return b"J" + n.to_bytes(4, "little", signed=True)


@pytest.mark.parametrize(
    ("ops", "reason"),
    [
        pytest.param(b"K\x01s.", "stack underflow", id="SETITEM-short"),
        pytest.param(b"}(K\x01s.", "stack underflow", id="SETITEM-across-a-MARK"),
        pytest.param(b"](Na.", "stack underflow", id="APPEND-across-a-MARK"),
        pytest.param(b"Nh\x05.", "memo index 5 never stored", id="GET-of-nothing"),
        pytest.param(b"(u.", "stack underflow", id="SETITEMS-without-a-container"),
        pytest.param(b"}(K\x01u.", "odd number of items for SETITEMS", id="SETITEMS-odd"),
        pytest.param(b"(K\x01d.", "odd number of items for DICT", id="DICT-odd"),
        pytest.param(b"u.", "no MARK", id="SETITEMS-without-a-MARK"),
        pytest.param(b"(o.", "OBJ without a class", id="OBJ-empty"),
        pytest.param(b"K\x01K\x02\x93.", "STACK_GLOBAL of a non-string", id="STACK_GLOBAL-of-ints"),
        pytest.param(b"\x80\x06N.", "unsupported pickle protocol 6", id="PROTO-6"),
        pytest.param(b"(.", "stack underflow", id="STOP-on-a-MARK"),
    ],
)
def test_what_the_unpickler_would_refuse_for_its_stack_the_scan_refuses(scan: Scan, ops: bytes, reason: str) -> None:
    with pytest.raises(UnsafePickle, match=reason):
        scan(ops)


def test_int_keys_are_charged_and_str_keys_are_free(scan: Scan) -> None:
    ints = b"}(" + b"".join(int_key(n) + b"N" for n in range(cost_scan.MAX_HASHED)) + b"u"
    assert scan(record_of(ints)) == 0
    one_more = b"}(" + b"".join(int_key(n) + b"N" for n in range(cost_scan.MAX_HASHED + 1)) + b"u"
    with pytest.raises(UnsafePickle, match="weigh more than"):
        scan(record_of(one_more))
    strings = b"}(" + b"".join(b"\x8c\x05" + b"%05d" % n + b"N" for n in range(5 * cost_scan.MAX_HASHED)) + b"u"
    assert scan(record_of(strings)) == 0


def test_a_tuple_key_weighs_every_item_it_repeats(scan: Scan) -> None:
    # t = (t, t), n levels: 2**(n+1) - 1 items visited by one hash of it.
    def nested(levels: int) -> bytes:
        return record_of(b"}K\x01\x85" + b"2\x86" * levels + b"Ns")

    assert scan(nested(8)) == SHARES_OBJECTS  # weight 511
    with pytest.raises(UnsafePickle, match="weigh more than"):
        scan(nested(9))  # weight 1023, plus the 2 of the inner tuple: over
    with pytest.raises(UnsafePickle, match="weigh more than"):
        scan(nested(60))


def test_set_members_are_charged_like_keys(scan: Scan) -> None:
    members = b"".join(int_key(n) for n in range(cost_scan.MAX_HASHED + 1))
    with pytest.raises(UnsafePickle, match="weigh more than"):
        scan(record_of(b"\x8f(" + members + b"\x90"))
    with pytest.raises(UnsafePickle, match="weigh more than"):
        scan(record_of(b"(" + members + b"\x91"))


def test_objects_opcodes_and_numbers_are_counted_whatever_their_opcode(scan: Scan) -> None:
    with pytest.raises(UnsafePickle, match=f"more than {cost_scan.MAX_OBJECTS} objects"):
        scan(record_of(b"](" + b"]" * (cost_scan.MAX_OBJECTS + 1) + b"e"))
    assert scan(record_of(b"](" + b"]" * (cost_scan.MAX_OBJECTS - 3) + b"e")) == 0
    with pytest.raises(UnsafePickle, match=f"more than {cost_scan.MAX_OPCODES} opcodes"):
        scan(record_of(b"N" + b"2" * cost_scan.MAX_OPCODES))
    with pytest.raises(UnsafePickle, match=f"more than {cost_scan.MAX_NUMBERS} numbers"):
        scan(record_of(b"](" + b"G" + b"\x00" * 8 + b"K\x01" * cost_scan.MAX_NUMBERS + b"e"))


def test_calls_into_stand_ins_are_charged_with_the_arguments_they_copy(scan: Scan) -> None:
    arguments = b"(" + b"N" * 1000 + b"t\x94"  # one tuple of 1,000 items, remembered
    calls = cost_scan.MAX_CALLS // 1001
    reduce = b"cmyapp\nThing\n\x94" + arguments + b"0](" + b"h\x00h\x01R" * calls + b"e"
    assert scan(record_of(reduce)) == NAMES_CLASSES | SHARES_OBJECTS
    more = b"cmyapp\nThing\n\x94" + arguments + b"0](" + b"h\x00h\x01R" * (calls + 1) + b"e"
    with pytest.raises(UnsafePickle, match="stand-in calls"):
        scan(record_of(more))


def test_newobj_ex_is_charged_the_keyword_dict_it_copies(scan: Scan) -> None:
    kwargs = b"}(" + b"".join(b"\x8c\x05" + b"k%04d" % n + b"N" for n in range(4000)) + b"u\x94"
    one = b"cmyapp\nThing\n\x94" + kwargs + b"0](h\x00)h\x01\x92e"
    assert scan(record_of(one)) == NAMES_CLASSES | SHARES_OBJECTS
    three = b"cmyapp\nThing\n\x94" + kwargs + b"0](" + b"h\x00)h\x01\x92" * 3 + b"e"
    with pytest.raises(UnsafePickle, match="stand-in calls"):
        scan(record_of(three))


def test_appends_and_setitems_on_a_stand_in_object_are_calls(scan: Scan) -> None:
    obj = b"cmyapp\nThing\n)\x81"
    with pytest.raises(UnsafePickle, match="stand-in calls"):
        scan(record_of(obj + b"NNs" * (cost_scan.MAX_CALLS + 1)))
    # On a list they are not: the unpickler extends it in C.
    assert scan(record_of(b"]" + b"Na" * (cost_scan.MAX_CALLS + 1))) == 0


def test_decimal_int_texts_are_charged_their_digits(scan: Scan) -> None:
    digits = 4000
    fits = cost_scan.MAX_TEXT_DIGITS // digits
    texts = b"](" + (b"L" + b"7" * digits + b"L\n") * fits + b"e"
    assert scan(record_of(texts)) == 0
    with pytest.raises(UnsafePickle, match="digits of decimal ints"):
        scan(record_of(b"](" + (b"L" + b"7" * digits + b"L\n") * (fits + 1) + b"e"))
    # Short ones (what protocol 0 writes for ordinary ints) cost nothing here.
    assert scan(record_of(b"](" + b"I12345\n" * 4000 + b"e")) == 0


def test_a_class_name_longer_than_any_real_one_is_refused(scan: Scan) -> None:
    name = b"a" * (cost_scan.MAX_NAME_BYTES + 1)
    with pytest.raises(UnsafePickle, match="class name longer than"):
        scan(record_of(b"cmyapp\n" + name + b"\n"))
    with pytest.raises(UnsafePickle, match="class name longer than"):
        scan(record_of(b"\x8c\x05myapp" + b"X" + len(name).to_bytes(4, "little") + name + b"\x93"))


def test_a_memo_index_beyond_every_object_is_refused(scan: Scan) -> None:
    index = cost_scan.MAX_OBJECTS + 1
    with pytest.raises(UnsafePickle, match=f"memo index {index} out of range"):
        scan(record_of(b"N" + b"\x80" * 0 + b"r" + index.to_bytes(4, "little") + b"0" + b"\x8c\x01x" * 40_000 + b"N"))
