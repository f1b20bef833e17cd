"""The C fast path (class-free pickle straight to JSON) against the Python path.

The contract of :func:`relay.directjson.pickle_to_json`: None, or exactly the
bytes :func:`relay.wire.decode_payload_python` returns for the same payload
and limits (which then must not refuse it).  Checked here on generated
records in every pickle protocol, real SocketHandler frames, arbitrary and
mutated bytes, and on the edges where it must step aside.
"""

from __future__ import annotations

import math
import pickle
import struct

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.frames import build_frames
from relay import directjson
from relay.jsonvalue import DecodeLimitExceeded
from relay.pickleops import MAX_NUMBERS, SHARES_OBJECTS, scan
from relay.wire import DecodeLimits, decode_payload, decode_payload_python
from tests.relay.test_fuzz import SEED_FRAMES, fuzz, json_values, mutated, payloads, records

pytestmark = pytest.mark.skipif(directjson.IMPLEMENTATION != "c", reason="the C fast path is not built here")

DEFAULT = DecodeLimits()
REFUSED = "refused"


def fast(payload: bytes, limits: DecodeLimits = DEFAULT) -> bytes | None:
    return directjson.pickle_to_json(payload, limits.max_depth, limits.decoded_budget(len(payload)))


def reference(payload: bytes, limits: DecodeLimits = DEFAULT) -> bytes | str:
    try:
        return decode_payload_python(payload, limits)
    except ValueError:
        return REFUSED


def agree(payload: bytes, limits: DecodeLimits = DEFAULT) -> bool:
    """Assert the contract for one payload; return whether the C path answered."""
    answer = fast(payload, limits)
    if answer is None:
        return False
    assert answer == reference(payload, limits)
    return True


# Values the fast path must take: no lone surrogates, ints that every
# protocol writes in a form it reads (protocol 1 writes big ones as text), finite floats.
plain_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
plain_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**18) + 1, 10**18 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | plain_text
)
plain_values = st.recursive(
    plain_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(plain_text, inner, max_size=4)
    ),
    max_leaves=16,
)
plain_records = st.dictionaries(plain_text, plain_values, max_size=10)


@fuzz(600)
@given(plain_records, st.integers(1, 5))
def test_plain_records_take_the_fast_path_and_match(record: dict[str, object], protocol: int) -> None:
    payload = pickle.dumps(record, protocol)
    answered = agree(payload)
    # Objects pickled twice (an interned string, say) are shared: the Python path's.
    if not scan(payload) & SHARES_OBJECTS:
        assert answered, payload


@fuzz(400)
@given(st.dictionaries(st.text(max_size=20), json_values, max_size=8), st.integers(0, 5))
def test_any_json_like_record_in_any_protocol_agrees(record: dict[str, object], protocol: int) -> None:
    agree(pickle.dumps(record, protocol))


@fuzz(200)
@given(records())
def test_real_frames_agree(case: tuple[bytes, object, object]) -> None:
    agree(case[0][4:])


def test_the_benchmark_mix_takes_the_fast_path_except_its_classes() -> None:
    answered = 0
    frames = build_frames(2000)
    for data in frames:
        answered += agree(data[4:])
    # One record in ten carries a datetime, a Decimal and a set: classes.
    assert 0.85 * len(frames) <= answered < len(frames)


@fuzz(800)
@given(payloads)
def test_arbitrary_payloads_agree(payload: bytes) -> None:
    agree(payload)


@fuzz(400)
@given(mutated())
def test_mutated_real_frames_agree(case: tuple[bytes, bytes]) -> None:
    _, payload = case
    agree(payload)
    # Every prefix: cut before its STOP, the Python path refuses, so the C
    # path must not answer (a mutation may have put a STOP earlier: then both agree).
    for end in range(0, len(payload), max(1, len(payload) // 20)):
        agree(payload[:end])


@fuzz(2000)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_are_written_as_orjson_writes_them(value: float) -> None:
    payload = pickle.dumps({"f": value}, 1)
    assert fast(payload) == orjson.dumps({"f": value})


@pytest.mark.parametrize(
    "value",
    [0.0, -0.0, 1.0, -1.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e15, 1e16, 1e17,
     9999999999999998.0, 1e-4, 1e-5, 1e-6, 1.5e-7, 0.1, 1795616045.161798, 161.0, 123456789012345680.0,
     -1e15, 999999999999999.9, 2.0**53, 2.0**63, -(2.0**63)],
)  # fmt: skip
def test_float_edges(value: float) -> None:
    assert fast(pickle.dumps({"f": value}, 1)) == orjson.dumps({"f": value})
    assert fast(pickle.dumps({"f": value}, 4)) == orjson.dumps({"f": value})


def test_every_control_character_and_quote_is_escaped_as_orjson_does() -> None:
    text = "".join(chr(c) for c in range(0x20)) + '"\\\x7f\u2028/é東\U0001f600'
    record = {"msg": text, "key " + text: 1}  # two objects: one pickled twice would be shared
    assert fast(pickle.dumps(record, 1)) == orjson.dumps(record)


# --------------------------------------------------------------------------- where it steps aside


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, 2**63, -(2**63) - 1, "\ud800", b"bytes", {1, 2}, {1: "int key"}],
    ids=["nan", "inf", "-inf", "2**63", "-2**63-1", "lone-surrogate", "bytes", "set", "int-key"],
)
@pytest.mark.parametrize("protocol", [1, 2, 4])
def test_values_it_leaves_to_python(value: object, protocol: int) -> None:
    payload = pickle.dumps({"v": value}, protocol)
    assert fast(payload) is None
    assert reference(payload) != REFUSED


def test_int64_edges_in_protocol_2_are_taken() -> None:
    for value in (2**63 - 1, -(2**63), 2**31, -(2**31) - 1, 255, 256, 65535, 65536):
        assert agree(pickle.dumps({"v": value}, 2)), value


@pytest.mark.parametrize("top", [[1, 2], "text", 3, None, (1,)])
def test_a_pickle_that_is_not_a_dict_is_left_to_python(top: object) -> None:
    payload = pickle.dumps(top, 2)
    assert fast(payload) is None
    assert reference(payload) == REFUSED


def test_a_key_given_twice_is_left_to_python() -> None:
    # EMPTY_DICT MARK 'a' 1 'a' 2 SETITEMS STOP: pickle.loads keeps the last value.
    payload = b"}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00aK\x02u."
    assert fast(payload) is None
    assert reference(payload) == b'{"a":2}'
    nested = b"}(X\x01\x00\x00\x00n}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00aK\x02uu."
    assert fast(nested) is None


def test_many_keys_without_duplicates_are_taken() -> None:
    record = {f"k{i}": i for i in range(3000)} | {"": 0, "a": 1, "aa": 2}
    assert agree(pickle.dumps(record, 1))


@pytest.mark.parametrize(
    "text",
    [b"I01\n", b"I00\n", b"I1\n", b"I0\n", b"I-1\n", b"I-0\n", b"I010\n", b"I0x10\n", b"I 1\n", b"I\n",
     b"L5L\n", b"L5\n", b"L-0L\n", b"L007L\n", b"L1_000L\n", b"L5LL\n", b"L123456789012345678L\n",
     b"L1234567890123456789L\n"],
)  # fmt: skip
def test_text_integers_are_read_as_the_unpickler_reads_them(text: bytes) -> None:
    agree(b"}(X\x01\x00\x00\x00v" + text + b"u.")


def test_beyond_max_depth_is_left_to_python_and_refused() -> None:
    limits = DecodeLimits(max_depth=4)
    at_limit = {"a": [[[1]]]}  # the record's dict is level 1
    assert agree(pickle.dumps(at_limit, 2), limits)
    too_deep = {"a": [[[[1]]]]}
    payload = pickle.dumps(too_deep, 2)
    assert fast(payload, limits) is None
    assert reference(payload, limits) == REFUSED


def test_near_the_decoded_size_limit_it_steps_aside() -> None:
    limits = DecodeLimits(max_decoded_bytes=1000)
    small = pickle.dumps({"msg": "x" * 100}, 2)
    assert agree(small, limits)
    large = pickle.dumps({"msg": "x" * 2000}, 2)
    assert fast(large, limits) is None
    with pytest.raises(DecodeLimitExceeded):
        decode_payload(large, limits)


def test_more_numbers_than_the_scan_allows_is_left_to_python() -> None:
    payload = pickle.dumps({"v": list(range(MAX_NUMBERS + 1))}, 2)
    assert fast(payload) is None
    assert reference(payload) == REFUSED
    assert agree(pickle.dumps({"v": list(range(MAX_NUMBERS))}, 2))


def test_a_pickle_of_a_hundred_thousand_containers_is_left_to_python() -> None:
    payload = pickle.dumps({"v": [[] for _ in range(100_000)]}, 2)
    assert fast(payload, DecodeLimits(max_decoded_bytes=10**7)) is None


@pytest.mark.parametrize(
    "payload",
    [b"}.", b"}q\x00.", b"}(u.", b"\x80\x05\x95\x02\x00\x00\x00\x00\x00\x00\x00}\x94.", b"}N.", b"(}.",
     b"}(X\x01\x00\x00\x00aNs.", b"}X\x01\x00\x00\x00aNs.", b"}X\x01\x00\x00\x00a(Ns.", b"}(X\x01\x00\x00\x00a)u.",
     b"}(X\x01\x00\x00\x00a](Ne.", b"}(X\x01\x00\x00\x00a](Ku.", b"}(X\x01\x00\x00\x00a(N\x85u.", b"}0.",
     b"\x80\x06}.", b"}(X\x01\x00\x00\x00a(NNNtu.", b"}(X\x01\x00\x00\x00aNX\x01\x00\x00\x00bu.", b"}(d.",
     b"(X\x01\x00\x00\x00aNd.", b"(X\x01\x00\x00\x00ad.", b"}.trailing", b"}\x95\xff\x00\x00\x00\x00\x00\x00\x00."],
)  # fmt: skip
def test_hand_made_stack_shapes_agree(payload: bytes) -> None:
    agree(payload)


def test_seed_frames_agree() -> None:
    for data in SEED_FRAMES:
        agree(data[4:])


def test_struct_of_binfloat_is_big_endian() -> None:
    payload = b"}(X\x01\x00\x00\x00fG" + struct.pack(">d", 2.5) + b"u."
    assert fast(payload) == b'{"f":2.5}'
