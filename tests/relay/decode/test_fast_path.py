"""The C fast path (pickle straight to JSON) against the Python path.

The contract of :func:`relay.decode.fast_path.pickle_to_json`: None, or exactly the
bytes :func:`relay.decode.frames.decode_payload_python` returns for the same payload
and limits (which then must not refuse it).  Checked here on generated
records in every pickle protocol, real SocketHandler frames, arbitrary and
mutated bytes, and on the edges where it must step aside.
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import math
import pickle
import struct
import uuid
import zoneinfo
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.frames import build_frames
from relay.decode import fast_path
from relay.decode.cost_scan import MAX_NUMBERS, SHARES_OBJECTS, scan
from relay.decode.frames import DecodeLimits, decode_payload, decode_payload_python
from relay.decode.to_json import MAX_VISITS, DecodeLimitExceeded
from tests.support.strategies import SEED_FRAMES, fuzz, json_values, mutated, payloads, records

pytestmark = pytest.mark.skipif(fast_path.IMPLEMENTATION != "c", reason="the C fast path is not built here")

DEFAULT = DecodeLimits()
REFUSED = "refused"


def fast(payload: bytes, limits: DecodeLimits = DEFAULT) -> bytes | None:
    return fast_path.pickle_to_json(payload, limits.max_depth, limits.decoded_budget(len(payload)))


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


def test_the_benchmark_mix_takes_the_fast_path_classes_included() -> None:
    # One record in ten carries a datetime (UTC), a Decimal and a set.
    frames = build_frames(2000)
    taken = [agree(data[4:]) for data in frames]
    assert all(taken), taken.index(False)


@fuzz(800)
@given(payloads)
def test_arbitrary_payloads_agree(payload: bytes) -> None:
    agree(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"\x80\x04}qs.",  # BINPUT 115 in a 5-byte pickle: found by the test above
        b"\x80\x04}q\x05.",
        b"\x80\x04}q\x06.",
        b"\x80\x04}r\x07\x00\x00\x00.",
        b"\x80\x04}r\x01\x00\x01\x00." + b" " * 70_000,  # index 65,537 in a long pickle
        b"\x80\x04}r\x00\x00\x01\x00." + b" " * 70_000,  # 65,536: the largest the scan takes
    ],
)
def test_a_memo_index_beyond_what_the_scan_takes_is_left_to_the_python_path(payload: bytes) -> None:
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


@fuzz(3000)
@given(
    st.floats(min_value=1.0, max_value=2.0**52, exclude_max=True)
    | st.builds(lambda second, micro: second + micro / 1e6, st.integers(10**9, 2 * 10**9), st.integers(0, 999_999))
    | st.builds(math.nextafter, st.integers(1, 2**40).map(float), st.sampled_from([0.0, math.inf]))
)
def test_floats_of_records_take_the_integer_path_and_are_written_as_repr_finds_them(value: float) -> None:
    # 1 <= value < 2**52 (created, relativeCreated, msecs): the shortest
    # digits come from integer arithmetic, not dtoa.
    assert fast(pickle.dumps({"f": value}, 1)) == orjson.dumps({"f": value})


@pytest.mark.parametrize(
    "value",
    [
        # ties, powers of two (an uneven rounding interval: dtoa decides), the ends of the range
        1.5, 2.5, 1.0000000000000002, 1.9999999999999998, 2.0000000000000004, 4503599627370495.5,
        4503599627370495.0, 4503599627370497.0, 2.0**51 + 0.5, 2.0**30 + 2.0**-22, 1764062593.1234567,
        1000.0000000000001, 999.9999999999999, 0.9999999999999999, 3.0000000000000004, 1e15 + 0.5,
        # two shortest candidates exactly as near: the even one (k.2 of k.25, k.8 of k.75)
        2.0**50 + 0.25, 2.0**50 + 0.75, 2.0**50 + 1.25, 1208363303651495.25, 1563641467391348.25,
    ],
)  # fmt: skip
def test_float_edges_of_the_integer_path(value: float) -> None:
    assert fast(pickle.dumps({"f": value}, 1)) == orjson.dumps({"f": value})


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
    [
        math.nan,
        math.inf,
        -math.inf,
        2**63,
        -(2**63) - 1,
        "\ud800",
        b"bytes",
        {1: "int key"},
        dt.timedelta(1),
        dt.UTC,
        dt.time(12, 30),
        uuid.UUID(int=7),
        collections.OrderedDict(a=1),
        complex(1, 2),
    ],
    ids=[
        "nan",
        "inf",
        "-inf",
        "2**63",
        "-2**63-1",
        "lone-surrogate",
        "bytes",
        "int-key",
        "timedelta",
        "timezone",
        "time",
        "uuid",
        "ordereddict",
        "complex",
    ],
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


def visits_of(value: object) -> int:
    """The walk's visits of a record's value (relay.decode.to_json): containers 2, stand-ins 4, scalar items 1."""
    if isinstance(value, dict):
        return 2 + sum(1 + (0 if is_scalar(item) else visits_of(item)) for item in value.values())
    if isinstance(value, list | tuple):
        return 2 + sum(1 if is_scalar(item) else visits_of(item) for item in value)
    if isinstance(value, set | frozenset):
        return 4 + sum(1 if is_scalar(item) else visits_of(item) for item in value)
    return 4  # datetime, Decimal


def is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float)


ITEMS: dict[str, Callable[[int], object]] = {
    "lists": lambda n: [],
    "dicts": lambda n: {},
    "sets": lambda n: frozenset([f"s{n}"]),
    "datetimes": lambda n: dt.datetime(2024, 1, 2, 3, 4, 5),
    "mixed": lambda n: [{}, [[]]],
}
# Repeated classes are memoised by the pickler: a record of many of them shares objects, which only Python takes.
SHARING_SHAPES = {"sets", "datetimes"}


@pytest.mark.parametrize("shape", list(ITEMS))
@pytest.mark.parametrize("delta", [-3, -1, 0, 1, 2, 5])
def test_at_the_walks_visit_limit_it_steps_aside_exactly_where_python_refuses(shape: str, delta: int) -> None:
    # A record the C path takes must be one the Python path takes (and
    # writes the same), on both sides of the walk's limit on visits.
    make = ITEMS[shape]
    per_item = visits_of(make(0))
    count = (MAX_VISITS - 2 - 1 - 2) // per_item + delta  # the record dict, its pair, the list
    record = {"v": [make(n) for n in range(count)]}
    payload = pickle.dumps(record, 2)
    limits = DecodeLimits(max_decoded_bytes=10**7)
    answer = fast(payload, limits)
    python = reference(payload, limits)
    if 2 + 1 + visits_of(record["v"]) > MAX_VISITS:
        assert python == REFUSED
        assert answer is None
    else:
        assert answer is not None or shape in SHARING_SHAPES, "the C path should take a tree within every limit"
        assert answer is None or answer == python


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


# --------------------------------------------------------------------------- well-known classes

# The value types the C path rebuilds itself, in the shapes their pickles have.
fixed_offsets = st.timedeltas(
    min_value=dt.timedelta(hours=-23, minutes=-59), max_value=dt.timedelta(hours=23, minutes=59)
)
fixed_zones = (
    st.none()
    | st.just(dt.UTC)
    | st.builds(dt.timezone, fixed_offsets)
    | st.builds(dt.timezone, fixed_offsets, st.text(max_size=5))
)
# Decimals whose str() is their text; below 1, str() switches to exponents past 6 decimals.
canonical_decimals = (
    st.from_regex(r"\A-?(0(\.[0-9]{1,6})?|[1-9][0-9]{0,30}(\.[0-9]{1,12})?)\Z")
    .filter(lambda text: str(decimal.Decimal(text)) == text)
    .map(decimal.Decimal)
)
known_values = (
    st.datetimes(timezones=fixed_zones)
    | st.dates()
    | canonical_decimals
    | st.sets(st.integers(-(10**6), 10**6), max_size=6)
    | st.frozensets(plain_text, max_size=4)
)


@fuzz(600)
@given(st.dictionaries(plain_text, plain_scalars, max_size=6), known_values, st.sampled_from([1, 2, 3]))
def test_well_known_values_take_the_fast_path_and_match(
    record: dict[str, object], value: object, protocol: int
) -> None:
    # SocketHandler pickles with protocol 1; protocols 2 and 3 spell bytes differently.
    payload = pickle.dumps({**record, "value": value}, protocol)
    answered = agree(payload)
    if not scan(payload) & SHARES_OBJECTS:
        assert answered, payload


anything_known = (
    st.datetimes(timezones=fixed_zones | st.timezones())
    | st.dates()
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12).map(lambda text: decimal.Decimal(text) if _is_decimal(text) else text)
    | st.sets(plain_scalars, max_size=4)
    | st.frozensets(st.integers(), max_size=4)
    | st.timedeltas()
)


def _is_decimal(text: str) -> bool:
    try:
        decimal.Decimal(text)
    except decimal.InvalidOperation:
        return False
    return True


@fuzz(600)
@given(st.dictionaries(plain_text, anything_known | plain_values, max_size=6), st.integers(0, 5))
def test_records_with_known_classes_in_any_protocol_agree(record: dict[str, object], protocol: int) -> None:
    agree(pickle.dumps(record, protocol))


@pytest.mark.parametrize(
    "value",
    [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999), dt.datetime(2024, 2, 29, 0, 0, 0, 1),
     dt.datetime(2024, 5, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))),
     dt.datetime(2024, 5, 1, tzinfo=dt.timezone(dt.timedelta(seconds=-1))),
     dt.datetime(2024, 5, 1, tzinfo=dt.timezone(dt.timedelta(microseconds=1), "tiny")),
     dt.datetime(2024, 5, 1, tzinfo=dt.timezone(dt.timedelta(hours=23, minutes=59, seconds=59, microseconds=999999))),
     dt.datetime(2024, 5, 1, fold=1), dt.date(1, 1, 1), dt.date(2000, 2, 29), decimal.Decimal("-0"),
     decimal.Decimal("0.000001"), decimal.Decimal("-12.50"), decimal.Decimal("1" * 40), set(), frozenset(),
     {"ä", "東"}],
)  # fmt: skip
@pytest.mark.parametrize("protocol", [1, 2, 3])
def test_well_known_value_edges_are_taken(value: object, protocol: int) -> None:
    assert agree(pickle.dumps({"v": value}, protocol)), value


@pytest.mark.parametrize(
    "value",
    [decimal.Decimal("1E+2"), decimal.Decimal("0.0000001"), decimal.Decimal("0.0000000"), decimal.Decimal("NaN"),
     decimal.Decimal("-Infinity"), decimal.Decimal("1.2E-9"),
     dt.datetime(2024, 5, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))],
)  # fmt: skip
def test_well_known_values_it_leaves_to_python(value: object) -> None:
    payload = pickle.dumps({"v": value}, 1)
    assert fast(payload) is None
    assert reference(payload) != REFUSED


def _datetime_pickle(state: bytes, tz: bytes = b"") -> bytes:
    """Protocol 1: {"v": datetime(_codecs.encode(state, "latin1")[, tz])}, as the stock pickler writes it."""
    text = state.decode("latin-1").encode()
    encode = b"c_codecs\nencode\n(X" + struct.pack("<I", len(text)) + text + b"X\x06\x00\x00\x00latin1tR"
    return b"}(X\x01\x00\x00\x00vcdatetime\ndatetime\n(" + encode + tz + b"tRu."


UTC_TZ = b"cdatetime\ntimezone\n(cdatetime\ntimedelta\n(K\x00K\x00K\x00tRtR"


@pytest.mark.parametrize(
    "state",
    [bytes([7, 232, 13, 1, 0, 0, 0, 0, 0, 0]), bytes([7, 232, 2, 30, 0, 0, 0, 0, 0, 0]),
     bytes([7, 231, 2, 29, 0, 0, 0, 0, 0, 0]), bytes([7, 108, 2, 29, 0, 0, 0, 0, 0, 0]),
     bytes([7, 208, 2, 29, 0, 0, 0, 0, 0, 0]), bytes([7, 232, 1, 1, 24, 0, 0, 0, 0, 0]),
     bytes([7, 232, 1, 1, 0, 60, 0, 0, 0, 0]), bytes([7, 232, 1, 1, 0, 0, 60, 0, 0, 0]),
     bytes([7, 232, 1, 1, 0, 0, 0, 0x0F, 0x42, 0x40]), bytes([0, 0, 1, 1, 0, 0, 0, 0, 0, 0]),
     bytes([39, 16, 1, 1, 0, 0, 0, 0, 0, 0]), bytes([7, 232, 1, 0, 0, 0, 0, 0, 0, 0]),
     bytes([7, 232, 0x81, 1, 0, 0, 0, 0, 0, 0]), bytes([7, 232, 1, 1, 0, 0, 0, 0, 0]),
     bytes([7, 232, 1, 1, 0, 0, 0, 0, 0, 0, 0])],
    ids=["month-13", "feb-30", "feb-29-2023", "feb-29-1900", "feb-29-2000", "hour-24", "minute-60", "second-60",
         "usec-1e6", "year-0", "year-10000", "day-0", "fold", "short", "long"],
)  # fmt: skip
@pytest.mark.parametrize("tz", [b"", UTC_TZ, b"N"], ids=["naive", "utc", "none"])
def test_datetime_states_are_checked_as_the_constructor_checks_them(state: bytes, tz: bytes) -> None:
    # Out-of-range fields make the Python path keep the datetime opaque: the C path must not answer.
    payload = _datetime_pickle(state, tz)
    agree(payload)
    assert reference(payload) != REFUSED


@pytest.mark.parametrize(
    "tz",
    [b"cdatetime\ntimezone\n(cdatetime\ntimedelta\n(K\x01K\x00K\x00tRtR",  # a day: refused by timezone()
     b"cdatetime\ntimezone\n(cdatetime\ntimedelta\n(J\xff\xff\xff\xffK\x00K\x00tRtR",  # minus a day
     b"cdatetime\ntimezone\n(cdatetime\ntimedelta\n(K\x00J\x80Q\x01\x00K\x00tRtR",  # 86400 seconds
     b"cdatetime\ntimezone\n(cdatetime\ntimedelta\n(K\x00K\x00tRtR",  # two arguments
     b"cdatetime\ntimezone\n(cdatetime\ntimedelta\n(K\x00K\x00\x88tRtR",  # a bool
     b"cdatetime\ntimezone\n(cdatetime\ntimedelta\n(K\x00K\x00K\x00tRK\x01tR",  # a name that is an int
     b"cdatetime\ntimezone\n(cdatetime\ntimedelta\n(K\x00K\x00K\x00tRNtR",  # name None
     b"cdatetime\ntimezone\n(K\x00tR",  # an int offset
     b"K\x05", b"X\x03\x00\x00\x00UTC"],  # not a time zone
)  # fmt: skip
def test_time_zone_shapes_agree(tz: bytes) -> None:
    agree(_datetime_pickle(bytes([7, 232, 5, 1, 12, 30, 0, 0, 0, 0]), tz))


@pytest.mark.parametrize(
    "payload",
    [b"}(X\x01\x00\x00\x00vcdecimal\nDecimal\n(X\x03\x00\x00\x001.5X\x00\x00\x00\x00tRu.",  # two arguments
     b"}(X\x01\x00\x00\x00vcdecimal\nDecimal\n(K\x01tRu.",  # an int argument
     b"}(X\x01\x00\x00\x00vcdecimal\nDecimal\n)Ru.",  # no argument
     b"}(X\x01\x00\x00\x00vc__builtin__\nset\n(](K\x01K\x02etRK\x03au.",  # APPEND onto the set
     b"}(X\x01\x00\x00\x00vc__builtin__\nset\n()tRu.",  # a tuple argument
     b"}(X\x01\x00\x00\x00vc__builtin__\nset\n(]]tRu.",  # two arguments
     b"}(X\x01\x00\x00\x00vc__builtin__\nset\nu.",  # the class itself as a value
     b"}(X\x01\x00\x00\x00vc_codecs\nencode\n(X\x01\x00\x00\x00aX\x04\x00\x00\x00utf8tRu.",  # bytes as a value
     b"}(X\x01\x00\x00\x00vcdatetime\ndate\n(C\x04\x07\xe8\x02\x1dtRu.",  # protocol 3 bytes
     b"}(X\x01\x00\x00\x00vcdatetime\ndate\n(C\x04\x07\xe8\x02\x1dK\x01tRu.",  # an extra argument
     b"}(X\x01\x00\x00\x00vcdatetime\ndate\n(C\x04\x07\xe8\x02\x1etRu.",  # 30 February
     b"}(X\x01\x00\x00\x00vcdatetime\ndate\n(X\x04\x00\x00\x00\x07\xc3\xa8\x02\x1dtRu.",  # a str state
     b"}(X\x01\x00\x00\x00vcdatetime\ndatetime\nK\x01Ru.",  # REDUCE of a non-tuple
     b"}(X\x01\x00\x00\x00vcos\nsystem\n(X\x02\x00\x00\x00idtRu.",  # a forbidden global
     b"}(X\x01\x00\x00\x00vcdatetime\ndatetime\n(cdatetime\ndatetime\ntRu.",  # a class as its argument
     b"}(cdatetime\ndate\n(C\x04\x07\xe8\x02\x1dtRK\x01u.",  # a date as a key
     b"\x80\x04}(\x8c\x01v\x8c\x07decimal\x8c\x07Decimal\x93\x8c\x011\x85Ru."],  # STACK_GLOBAL
)  # fmt: skip
def test_hand_made_class_shapes_agree(payload: bytes) -> None:
    agree(payload)


def test_stack_global_of_a_known_class_is_taken() -> None:
    assert fast(b"\x80\x04}(\x8c\x01v\x8c\x07decimal\x8c\x07Decimal\x93\x8c\x011\x85Ru.") == b'{"v":"1"}'


def test_known_classes_count_against_the_depth_limit() -> None:
    limits = DecodeLimits(max_depth=3)
    assert agree(pickle.dumps({"a": [decimal.Decimal("1")]}, 1), limits)
    too_deep = pickle.dumps({"a": [[decimal.Decimal("1")]]}, 1)
    assert fast(too_deep, limits) is None
    assert reference(too_deep, limits) == REFUSED
    assert agree(pickle.dumps({"a": [{1, 2}]}, 1), limits)
    assert fast(pickle.dumps({"a": [[{1, 2}]]}, 1), limits) is None


@pytest.mark.parametrize("position", range(17))
def test_every_ascii_byte_at_every_position_of_a_word_is_escaped_as_orjson_does(position: int) -> None:
    # Strings are measured eight bytes at a time where they are plain ASCII.
    for code in range(0x80):
        text = "abcdefghijklmnopq"
        text = text[:position] + chr(code) + text[position + 1 :]
        record = {"m": text, "k" + text: 1}
        assert fast(pickle.dumps(record, 1)) == orjson.dumps(record), (position, code)
