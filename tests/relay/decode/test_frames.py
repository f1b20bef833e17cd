"""FrameDecoder and decode_payload, fed frames from the real ``SocketHandler.makePickle``.

No sockets: ``makePickle`` only serialises, so every frame here is exactly what
a Python service puts on the frames.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import http
import ipaddress
import itertools
import json
import logging
import logging.handlers
import pathlib
import pickle
import random
import signal
import socket
import types
import uuid
import zoneinfo
from collections.abc import Iterable
from typing import Any

import pytest

from relay.decode.frames import BadFrame, DecodeLimits, FrameDecoder, FrameTooLarge, Record, decode_payload


@pytest.fixture(autouse=True, params=["c-loop", "python-loop"])
def frame_loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with FrameDecoder.feed's frame loop in C and in Python (as without the extension)."""
    from relay.decode import frames

    if request.param == "c-loop" and frames.feed_frames is None:
        pytest.skip("the C frame loop is not built here")
    if request.param == "python-loop":
        monkeypatch.setattr(frames, "feed_frames", None)
    return str(request.param)


Event = Record | BadFrame

DEFAULT_MAX_FRAME = 1024 * 1024
DEFAULT_MAX_SKIP = 64 * 1024 * 1024


# --------------------------------------------------------------------------- helpers


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def log_record(
    msg: object, *args: object, logger_name: str = "shop.orders", level: int = logging.INFO, **kwargs: Any
) -> logging.LogRecord:
    """Log through a real Logger (so exc_info, stack_info and extra= work as in production)."""
    logger = logging.getLogger(logger_name)
    capture = _Capture()
    saved = logger.propagate, logger.level
    logger.addHandler(capture)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        logger.log(level, msg, *args, **kwargs)
    finally:
        logger.removeHandler(capture)
        logger.propagate, logger.level = saved
    [record] = capture.records
    return record


def make_frame(record: logging.LogRecord) -> bytes:
    """The bytes a SocketHandler would send for ``record`` (makePickle opens no connection)."""
    handler = logging.handlers.SocketHandler("127.0.0.1", 9)
    try:
        return handler.makePickle(record)
    finally:
        handler.close()


def frame_of(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def payload_of(frame: bytes) -> bytes:
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    return frame[4:]


def sent_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What makePickle sends: the record's __dict__ with the message merged (call after make_frame)."""
    fields = dict(record.__dict__)
    fields.update(msg=record.getMessage(), args=None, exc_info=None)
    fields.pop("message", None)
    return fields


def decoded(event: Event) -> dict[str, Any]:
    assert isinstance(event, Record), event
    value = json.loads(event.decode("utf-8"))
    assert isinstance(value, dict)
    return value


def feed_all(decoder: FrameDecoder, chunks: Iterable[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def tagged(events: list[Event]) -> list[tuple[str, tuple[Any, ...]]]:
    """Events with their type, so a Record and a BadFrame can never compare equal."""
    return [(type(event).__name__, tuple(event)) for event in events]


def nested_lists(levels: int) -> object:
    value: object = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def laughs(levels: int) -> list[Any]:
    """A list holding the previous list twice, ``levels`` deep: tiny pickle, 2**levels leaves."""
    node: list[Any] = ["ha"]
    for _ in range(levels):
        node = [node, node]
    return node


def one_frame_payload(msg: str = "hello") -> bytes:
    return payload_of(make_frame(log_record(msg)))


# --------------------------------------------------------------------------- values for extra=


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    HIGH = 1
    LOW = 9


class Point:
    def __init__(self, x: int, y: float) -> None:
        self.x = x
        self.y = y
        self.tags = ["a", "b"]


@dataclasses.dataclass
class Order:
    id: int
    placed: dt.datetime
    lines: list[str]


def opaque_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


IST = dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")
AWARE = dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=IST)
AWARE_NEGATIVE = dt.datetime(1969, 7, 20, 20, 17, 40, tzinfo=dt.timezone(-dt.timedelta(hours=4)))
UTC = dt.datetime(2038, 1, 19, 3, 14, 8, tzinfo=dt.UTC)
NAIVE = dt.datetime(1999, 12, 31, 23, 59, 59, 999999)
PLACED = dt.datetime(2023, 5, 1, 8, 30, tzinfo=dt.UTC)
NESTED = {"a": [1, (2, "three"), {"b": None, "c": [True, False, 1.5]}], "d": {"e": {"f": ["g"]}}, "": []}
UUID4 = uuid.UUID("12345678-1234-5678-1234-567812345678")
UUID1 = uuid.uuid1()  # carries an is_safe flag in its pickled state


def _point() -> Point:
    return Point(3, -4.5)


EXTRA_CASES = [
    pytest.param(AWARE, AWARE.isoformat(), id="datetime-aware-named-tz"),
    pytest.param(AWARE_NEGATIVE, AWARE_NEGATIVE.isoformat(), id="datetime-aware-negative-offset"),
    pytest.param(UTC, UTC.isoformat(), id="datetime-utc"),
    pytest.param(NAIVE, NAIVE.isoformat(), id="datetime-naive"),
    pytest.param(dt.datetime.min, dt.datetime.min.isoformat(), id="datetime-min"),
    pytest.param(dt.datetime.max, dt.datetime.max.isoformat(), id="datetime-max"),
    pytest.param(dt.date(2000, 2, 29), dt.date(2000, 2, 29).isoformat(), id="date"),
    pytest.param(dt.time(7, 8, 9), dt.time(7, 8, 9).isoformat(), id="time-naive"),
    pytest.param(dt.time(23, 0, 1, 42, tzinfo=IST), dt.time(23, 0, 1, 42, tzinfo=IST).isoformat(), id="time-aware"),
    pytest.param(
        dt.timedelta(days=-1, seconds=5, microseconds=7),
        str(dt.timedelta(days=-1, seconds=5, microseconds=7)),
        id="timedelta-negative",
    ),
    pytest.param(dt.timedelta.max, str(dt.timedelta.max), id="timedelta-max"),
    pytest.param(decimal.Decimal("-1234.5678900"), str(decimal.Decimal("-1234.5678900")), id="decimal"),
    pytest.param(decimal.Decimal("1.23E+5"), str(decimal.Decimal("1.23E+5")), id="decimal-exponent"),
    pytest.param(decimal.Decimal("NaN"), str(decimal.Decimal("NaN")), id="decimal-nan"),
    pytest.param(UUID4, str(UUID4), id="uuid4"),
    pytest.param(UUID1, str(UUID1), id="uuid1"),
    pytest.param(b"\x00ab\xff'\"\\", repr(b"\x00ab\xff'\"\\"), id="bytes"),
    pytest.param(b"", repr(b""), id="bytes-empty"),
    pytest.param(bytearray(b"xyz\x80"), repr(bytes(bytearray(b"xyz\x80"))), id="bytearray"),
    pytest.param(pathlib.Path("/var/log/app.log"), str(pathlib.Path("/var/log/app.log")), id="path"),
    pytest.param(
        pathlib.PurePosixPath("relative/dir/f.txt"),
        str(pathlib.PurePosixPath("relative/dir/f.txt")),
        id="purepath",
    ),
    pytest.param(pathlib.Path("/tmp/日本/😀.log"), str(pathlib.Path("/tmp/日本/😀.log")), id="path-non-ascii"),
    pytest.param(pathlib.Path("."), str(pathlib.Path(".")), id="path-dot"),
    pytest.param(ipaddress.ip_address("10.0.0.1"), str(ipaddress.ip_address("10.0.0.1")), id="ipv4"),
    pytest.param(ipaddress.ip_address("2001:db8::1"), str(ipaddress.ip_address("2001:db8::1")), id="ipv6"),
    pytest.param(complex(1.5, -2), str(complex(1.5, -2)), id="complex"),
    pytest.param(float("inf"), repr(float("inf")), id="float-inf"),
    pytest.param(float("-inf"), repr(float("-inf")), id="float-minus-inf"),
    pytest.param(float("nan"), repr(float("nan")), id="float-nan"),
    pytest.param(0.1 + 0.2, 0.1 + 0.2, id="float-exact-repr"),
    pytest.param(2**64 + 1, 2**64 + 1, id="int-beyond-64-bits"),
    pytest.param(-(10**1000), -(10**1000), id="int-1001-digits"),
    pytest.param(None, None, id="none"),
    pytest.param(True, True, id="bool"),
    pytest.param(NESTED, json.loads(json.dumps(NESTED)), id="nested-dict-list-tuple"),
    pytest.param({"客户": "张三", "ключ": "значение"}, {"客户": "张三", "ключ": "значение"}, id="non-ascii-keys"),
    pytest.param(
        collections.OrderedDict([("z", 1), ("a", 2), ("m", 3)]),
        dict(collections.OrderedDict([("z", 1), ("a", 2), ("m", 3)])),
        id="ordereddict",
    ),
    pytest.param(collections.defaultdict(list, {"k": [1, 2]}), {"k": [1, 2]}, id="defaultdict"),
    pytest.param(collections.Counter("mississippi"), dict(collections.Counter("mississippi")), id="counter"),
    pytest.param(collections.deque([1, 2, 3], maxlen=5), [1, 2, 3], id="deque"),
    pytest.param(
        _point(),
        {"__class__": opaque_name(Point), "state": {"x": 3, "y": -4.5, "tags": ["a", "b"]}},
        id="class-instance",
    ),
    pytest.param(
        Order(7, PLACED, ["sku-1"]),
        {
            "__class__": opaque_name(Order),
            "state": {"id": 7, "placed": PLACED.isoformat(), "lines": ["sku-1"]},
        },
        id="dataclass-with-datetime",
    ),
    pytest.param(Color.RED, {"__class__": opaque_name(Color), "args": [Color.RED.value]}, id="enum"),
    pytest.param(Priority.LOW, {"__class__": opaque_name(Priority), "args": [Priority.LOW.value]}, id="intenum"),
]


# --------------------------------------------------------------------------- whole records


def test_plain_record_arrives_with_every_attribute_makepickle_sent() -> None:
    record = log_record("order %s shipped to %r", 42, "Zoë", logger_name="shop.orders")
    frame = make_frame(record)

    [event] = FrameDecoder().feed(frame)

    assert decoded(event) == sent_fields(record)
    assert decoded(event)["msg"] == "order 42 shipped to 'Zoë'"
    assert decoded(event)["levelname"] == "INFO"


@pytest.mark.parametrize(("value", "expected"), EXTRA_CASES)
def test_extra_values_become_readable_json(value: object, expected: object) -> None:
    record = log_record("with extra", extra={"value": value, "plain": "kept"})
    frame = make_frame(record)

    [event] = FrameDecoder().feed(frame)

    fields = decoded(event)
    assert fields["value"] == expected
    assert fields["plain"] == "kept"
    assert fields["msg"] == "with extra"


@pytest.mark.parametrize("value", [{"b", "a", "c"}, frozenset({3, 1, 2}), set()], ids=["set", "frozenset", "empty-set"])
def test_sets_become_lists_of_their_members(value: set[Any] | frozenset[Any]) -> None:
    record = log_record("with a set", extra={"members": value})

    [event] = FrameDecoder().feed(make_frame(record))

    members = decoded(event)["members"]
    assert isinstance(members, list)
    assert sorted(members) == sorted(value)


def test_ordered_dict_keeps_its_key_order() -> None:
    ordered = collections.OrderedDict([("z", 1), ("a", 2), ("m", 3)])
    record = log_record("ordered", extra={"ordered": ordered})

    [event] = FrameDecoder().feed(make_frame(record))

    assert list(decoded(event)["ordered"].items()) == list(ordered.items())


def _zone(key: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(key)
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip(f"no time zone database entry for {key}")


@pytest.mark.parametrize("key", ["Europe/Paris", "America/St_Johns", "UTC"])
def test_datetime_with_zoneinfo_arrives_with_its_offset(key: str) -> None:
    summer = dt.datetime(2024, 7, 1, 12, 30, 15, 250, tzinfo=_zone(key))
    winter = dt.datetime(2024, 1, 15, 8, 0, tzinfo=_zone(key))
    record = log_record("scheduled", extra={"summer": summer, "winter": winter})

    [event] = FrameDecoder().feed(make_frame(record))

    fields = decoded(event)
    assert fields["summer"] == summer.isoformat()
    assert fields["winter"] == winter.isoformat()


@pytest.mark.parametrize(
    "key",
    ["../../../../etc/passwd", "/etc/localtime", "Mars/Olympus_Mons", "Europe/../../etc", "x" * 200, ""],
)
def test_hostile_or_unknown_zone_key_leaves_the_datetime_naive(key: str) -> None:
    when = dt.datetime(2024, 7, 1, 12, 30, tzinfo=_zone("UTC"))
    frame = make_frame(log_record("scheduled", extra={"when": when}))
    utc = b"X\x03\x00\x00\x00UTC"
    assert frame.count(utc) == 1
    key_bytes = key.encode()
    payload = payload_of(frame).replace(utc, b"X" + len(key_bytes).to_bytes(4, "little") + key_bytes)

    [event] = FrameDecoder().feed(frame_of(payload))

    assert decoded(event)["when"] == when.replace(tzinfo=None).isoformat()


@pytest.mark.parametrize(
    "value",
    [http.HTTPStatus.NOT_FOUND, signal.SIGTERM, socket.AF_INET],
    ids=["HTTPStatus", "Signals", "AddressFamily"],
)
def test_stdlib_enums_in_extra_arrive_opaque(value: enum.Enum) -> None:
    record = log_record("request done", extra={"value": value})

    [event] = FrameDecoder().feed(make_frame(record))

    fields = decoded(event)
    assert fields["value"] == {"__class__": opaque_name(type(value)), "args": [value.value]}
    assert fields["msg"] == "request done"


@pytest.mark.parametrize("value", [logging.Formatter, Point], ids=["stdlib-class", "own-class"])
def test_class_object_in_extra_arrives_with_its_name(value: type) -> None:
    record = log_record("which class", extra={"value": value})

    [event] = FrameDecoder().feed(make_frame(record))

    assert decoded(event)["value"] == {"__class__": opaque_name(value)}


def test_simple_namespace_arrives_with_its_attributes() -> None:
    record = log_record("ns", extra={"value": types.SimpleNamespace(user="ann", id=3)})

    [event] = FrameDecoder().feed(make_frame(record))

    assert decoded(event)["value"] == {
        "__class__": "types.SimpleNamespace",
        "state": {"user": "ann", "id": 3},
    }


@pytest.mark.parametrize(
    "path",
    [pathlib.PureWindowsPath("C:/Logs/app.log"), pathlib.PureWindowsPath("//server/share/x.txt")],
    ids=["drive", "unc"],
)
def test_windows_path_arrives_as_windows_shows_it(path: pathlib.PureWindowsPath) -> None:
    record = log_record("from windows", extra={"path": path})

    [event] = FrameDecoder().feed(make_frame(record))

    assert decoded(event)["path"] == str(path)


def test_exception_instance_in_extra_keeps_its_arguments() -> None:
    record = log_record("failed", extra={"error": KeyError("order-7")})

    [event] = FrameDecoder().feed(make_frame(record))

    assert decoded(event)["error"] == {"__class__": opaque_name(KeyError), "args": ["order-7"]}


def test_exc_info_traceback_text_arrives() -> None:
    def charge_card() -> None:
        raise ZeroDivisionError("division by zero")

    try:
        charge_card()
    except ZeroDivisionError:
        record = log_record("payment failed", exc_info=True)
    frame = make_frame(record)  # formats the traceback into record.exc_text

    [event] = FrameDecoder().feed(frame)

    fields = decoded(event)
    assert fields["exc_info"] is None
    assert fields["exc_text"] == record.exc_text
    assert fields["exc_text"].startswith("Traceback (most recent call last):")
    assert "in charge_card" in fields["exc_text"]
    assert fields["exc_text"].endswith("ZeroDivisionError: division by zero")
    assert fields == sent_fields(record)


def test_stack_info_arrives() -> None:
    record = log_record("where am I", stack_info=True)

    [event] = FrameDecoder().feed(make_frame(record))

    fields = decoded(event)
    assert record.stack_info is not None
    assert fields["stack_info"] == record.stack_info
    assert fields["stack_info"].startswith("Stack (most recent call last):")
    assert "test_stack_info_arrives" in fields["stack_info"]


def test_non_ascii_message_and_logger_name_arrive_unchanged_as_utf8() -> None:
    name = "支付.サービス.😀"
    message = "Zoë 😀 日本語 한국어 e\u0301 (combining) \u202eRTL\u202c 👨\u200d👩\u200d👧 ∑ \x00 \t end"
    record = log_record("%s", message, logger_name=name)

    [event] = FrameDecoder().feed(make_frame(record))

    fields = decoded(event)
    assert fields["msg"] == message
    assert fields["name"] == name
    # The JSON is UTF-8, not \\u-escaped: downstream greps see the characters.
    assert "😀".encode() in event
    assert "日本語".encode() in event
    assert "e\u0301".encode() in event  # not normalised to é


def test_lone_surrogate_in_message_is_delivered_as_a_json_escape() -> None:
    message = "bad byte \udcff from a broken decoder"
    record = log_record(message)

    [event] = FrameDecoder().feed(make_frame(record))

    assert isinstance(event, Record)
    event.decode("utf-8")  # strict: the entry is valid UTF-8
    assert decoded(event)["msg"] == message


def test_500_kib_message_arrives_whole_in_small_chunks() -> None:
    unit = "log line ünïcode 42 "
    message = (unit * (500 * 1024 // len(unit) + 1))[: 500 * 1024]
    frame = make_frame(log_record(message))
    assert len(frame) < DEFAULT_MAX_FRAME

    decoder = FrameDecoder()
    events = feed_all(decoder, (frame[i : i + 8192] for i in range(0, len(frame), 8192)))

    [event] = events
    assert decoded(event)["msg"] == message
    assert decoder.pending_bytes == 0


def test_shared_references_are_rendered_in_full_not_as_recursion() -> None:
    shared = {"sku": "A-1", "qty": 2}
    record = log_record("shared", extra={"first": shared, "second": shared, "both": [shared, shared]})

    [event] = FrameDecoder().feed(make_frame(record))

    fields = decoded(event)
    assert fields["first"] == fields["second"] == shared
    assert fields["both"] == [shared, shared]


# --------------------------------------------------------------------------- framing


def stream_of(*frames: bytes) -> bytes:
    return b"".join(frames)


def _good(n: int) -> bytes:
    return make_frame(log_record("record %d of the stream", n, extra={"n": n, "when": UTC}))


def _with_traceback() -> bytes:
    try:
        {}["missing"]
    except KeyError:
        record = log_record("lookup failed", exc_info=True)
    return make_frame(record)


STREAMS = {
    "two-good": lambda: [_good(1), _good(2)],
    "good-bad-good": lambda: [_good(1), frame_of(b"cos\nsystem\n(S'true'\ntR."), _good(3)],
    "good-traceback-good": lambda: [_good(1), _with_traceback(), _good(3)],
    "good-empty-good": lambda: [_good(1), frame_of(b""), _good(3)],
}


@pytest.fixture(params=sorted(STREAMS))
def frames(request: pytest.FixtureRequest) -> list[bytes]:
    built: list[bytes] = STREAMS[request.param]()
    return built


def test_many_frames_in_one_chunk_arrive_in_order() -> None:
    frames = [make_frame(log_record("record %d", n)) for n in range(200)]

    decoder = FrameDecoder()
    events = decoder.feed(b"".join(frames))

    assert [decoded(event)["msg"] for event in events] == [f"record {n}" for n in range(200)]
    assert decoder.pending_bytes == 0


def test_feeding_one_byte_at_a_time_completes_each_frame_on_its_last_byte(frames: list[bytes]) -> None:
    stream = stream_of(*frames)
    whole = FrameDecoder().feed(stream)

    decoder = FrameDecoder()
    events: list[Event] = []
    completed_at: list[int] = []
    for index in range(len(stream)):
        new = decoder.feed(stream[index : index + 1])
        completed_at.extend([index] * len(new))
        events.extend(new)

    frame_ends = [sum(len(f) for f in frames[: n + 1]) - 1 for n in range(len(frames))]
    assert completed_at == frame_ends
    assert tagged(events) == tagged(whole)
    assert len(whole) == len(frames)
    assert decoder.pending_bytes == 0


def test_split_at_every_offset_gives_the_same_events_as_feeding_whole(frames: list[bytes]) -> None:
    stream = stream_of(*frames)
    whole = tagged(FrameDecoder().feed(stream))
    assert len(whole) == len(frames)

    for offset in range(len(stream) + 1):
        decoder = FrameDecoder()
        first = decoder.feed(stream[:offset])
        second = decoder.feed(stream[offset:])
        assert tagged(first + second) == whole, f"split at {offset}"
        assert decoder.pending_bytes == 0


def test_random_chunkings_give_the_same_events_as_feeding_whole(frames: list[bytes]) -> None:
    stream = stream_of(*frames)
    whole = tagged(FrameDecoder().feed(stream))
    rng = random.Random(20240229)

    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 12)))
        bounds = [0, *cuts, len(stream)]
        decoder = FrameDecoder()
        events = feed_all(decoder, (stream[a:b] for a, b in itertools.pairwise(bounds)))
        assert tagged(events) == whole, f"cuts {cuts}"


def test_every_prefix_of_a_frame_is_held_as_pending_without_an_event() -> None:
    frame = make_frame(log_record("almost there"))

    for cut in range(1, len(frame)):
        decoder = FrameDecoder()
        assert decoder.feed(frame[:cut]) == []
        assert decoder.pending_bytes == cut, f"cut at {cut}"
        [event] = decoder.feed(frame[cut:])
        assert decoded(event)["msg"] == "almost there"
        assert decoder.pending_bytes == 0


def test_pending_bytes_counts_only_the_incomplete_frame_after_complete_ones() -> None:
    first, second = make_frame(log_record("one")), make_frame(log_record("two"))
    decoder = FrameDecoder()
    assert decoder.pending_bytes == 0

    events = decoder.feed(first + second[:10])

    assert [decoded(event)["msg"] for event in events] == ["one"]
    assert decoder.pending_bytes == 10
    assert [decoded(event)["msg"] for event in decoder.feed(second[10:])] == ["two"]
    assert decoder.pending_bytes == 0


def test_empty_chunk_is_harmless() -> None:
    decoder = FrameDecoder()
    frame = make_frame(log_record("x"))

    assert decoder.feed(b"") == []
    assert decoder.feed(frame[:3]) == []
    assert decoder.feed(b"") == []
    assert len(decoder.feed(frame[3:])) == 1
    assert decoder.pending_bytes == 0


# --------------------------------------------------------------------------- frame size limit


@pytest.mark.parametrize("declared", [DEFAULT_MAX_SKIP + 1, 2**31, 2**32 - 1])
def test_header_over_the_skip_cap_raises_before_any_payload_arrives(declared: int) -> None:
    decoder = FrameDecoder()

    with pytest.raises(FrameTooLarge) as caught:
        decoder.feed(declared.to_bytes(4, "big"))

    assert caught.value.size == declared
    assert caught.value.limit == DEFAULT_MAX_SKIP
    assert str(declared) in str(caught.value)
    assert str(DEFAULT_MAX_SKIP) in str(caught.value)


def test_default_limit_header_is_accepted_and_waits_for_the_payload() -> None:
    decoder = FrameDecoder()

    assert decoder.feed(DEFAULT_MAX_FRAME.to_bytes(4, "big") + b"\x80") == []
    assert decoder.pending_bytes == 5


def test_configured_smaller_limit_discards_a_real_frame_above_it() -> None:
    frame = make_frame(log_record("x" * 2000))
    decoder = FrameDecoder(DecodeLimits(max_frame_bytes=1024))

    [event] = decoder.feed(frame)

    assert isinstance(event, BadFrame)
    assert event.raw == frame[4:260]
    assert f"frame of {len(frame) - 4} bytes exceeds max-frame-bytes (1024)" in event.reason
    assert decoder.pending_bytes == 0


def test_frame_exactly_at_the_limit_is_accepted_and_one_byte_more_is_not() -> None:
    frame = make_frame(log_record("exactly at the limit"))
    size = len(frame) - 4

    [event] = FrameDecoder(DecodeLimits(max_frame_bytes=size)).feed(frame)
    assert decoded(event)["msg"] == "exactly at the limit"

    [refused] = FrameDecoder(DecodeLimits(max_frame_bytes=size - 1)).feed(frame)
    assert isinstance(refused, BadFrame)


def test_frame_exactly_at_the_skip_cap_is_discarded_and_one_byte_more_closes() -> None:
    limits = DecodeLimits(max_frame_bytes=100, max_skip_bytes=1000)

    [event] = FrameDecoder(limits).feed((1000).to_bytes(4, "big") + b"z" * 1000)
    assert isinstance(event, BadFrame)

    with pytest.raises(FrameTooLarge) as caught:
        FrameDecoder(limits).feed((1001).to_bytes(4, "big"))
    assert (caught.value.size, caught.value.limit) == (1001, 1000)


def test_records_from_earlier_chunks_are_delivered_before_an_oversize_frame() -> None:
    decoder = FrameDecoder(DecodeLimits(max_frame_bytes=4096))
    good = make_frame(log_record("before the junk"))

    [event] = decoder.feed(good)
    assert decoded(event)["msg"] == "before the junk"
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"GET / HTTP/1.1\r\n")  # 'GET ' read as a length header (1.2 GB)


def test_records_before_an_oversize_header_in_the_same_chunk_come_with_the_error() -> None:
    decoder = FrameDecoder(DecodeLimits(max_frame_bytes=4096))
    good = make_frame(log_record("complete before the junk"))
    bad = frame_of(b"\xff\xfe")

    with pytest.raises(FrameTooLarge) as caught:
        decoder.feed(good + bad + b"GET / HTTP/1.1\r\n")

    assert [type(event) for event in caught.value.events] == [Record, BadFrame]
    assert decoded(caught.value.events[0])["msg"] == "complete before the junk"


def test_oversize_error_carries_no_events_when_nothing_completed_before_it() -> None:
    with pytest.raises(FrameTooLarge) as caught:
        FrameDecoder().feed((2**32 - 1).to_bytes(4, "big"))

    assert caught.value.events == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_frame_bytes": 0},
        {"max_frame_bytes": 2**32},
        {"max_depth": 0},
        {"max_decoded_bytes": -1},
    ],
)
def test_decode_limits_reject_impossible_values(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="max_"):
        DecodeLimits(**kwargs)


def test_decode_limits_refuse_a_skip_cap_below_the_frame_limit() -> None:
    with pytest.raises(ValueError, match=r"max-skip-bytes \(1000\) must be at least max-frame-bytes \(2000\)"):
        DecodeLimits(max_frame_bytes=2000, max_skip_bytes=1000)


def test_decode_limits_accept_the_largest_32_bit_frame() -> None:
    limits = DecodeLimits(max_frame_bytes=2**32 - 1, max_skip_bytes=2**32 - 1)
    assert limits.max_frame_bytes == 2**32 - 1


# --------------------------------------------------------------------------- bad frames are confined


BAD_PAYLOADS = [
    pytest.param(b"cos\nsystem\n(S'true'\ntR.", "os.system", id="forbidden-global"),
    pytest.param(b"\x00\x01 definitely not a pickle", "unknown opcode", id="garbage"),
    pytest.param(b"", "truncated", id="empty-payload"),
    pytest.param(pickle.dumps(["a", "list"], 1), "pickled list", id="pickled-list"),
    pytest.param(pickle.dumps({1: "a"}, 1), "non-string keys", id="non-string-keys"),
    # A modest index (a 16 MB memo even if the scan regressed); the real bombs are in test_cost_scan.py.
    pytest.param(b"\x80\x02N" + b"r" + (10**6).to_bytes(4, "little") + b".", "memo index", id="memo-bomb"),
    pytest.param(pickle.dumps({"msg": "lol", "bomb": laughs(40)}, 1), "deeper than 32", id="billion-laughs"),
    pytest.param(b"\x80\x02X\x00\x00\x00\x00Q.", "BINPERSID", id="persistent-id"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_PAYLOADS)
def test_bad_frame_between_good_frames_loses_nothing_valid(bad: bytes, reason: str) -> None:
    before, after = make_frame(log_record("before")), make_frame(log_record("after"))
    stream = before + frame_of(bad) + after

    for events in (FrameDecoder().feed(stream), feed_all(FrameDecoder(), (bytes([b]) for b in stream))):
        assert [type(event) for event in events] == [Record, BadFrame, Record]
        assert decoded(events[0])["msg"] == "before"
        assert decoded(events[2])["msg"] == "after"
        assert isinstance(events[1], BadFrame)
        assert events[1].raw == bad
        assert reason in events[1].reason


def test_bad_frames_fed_counts_the_bad_frames_of_the_last_feed_only() -> None:
    # The catcher looks for dead letters only when this says there are some.
    good, bad = make_frame(log_record("good")), frame_of(BAD_PAYLOADS[0].values[0])
    decoder = FrameDecoder()
    assert decoder.feed(good + bad + bad + good[:10])
    assert decoder.bad_frames_fed == 2
    assert decoder.feed(good[10:] + good)
    assert decoder.bad_frames_fed == 0
    oversize = (DEFAULT_MAX_FRAME + 1).to_bytes(4, "big") + b"z" * (DEFAULT_MAX_FRAME + 1)
    assert [type(event) for event in decoder.feed(bad + oversize)] == [BadFrame, BadFrame]
    assert decoder.bad_frames_fed == 2
    with pytest.raises(FrameTooLarge) as raised:
        decoder.feed(bad + (DEFAULT_MAX_SKIP + 1).to_bytes(4, "big"))
    assert [type(event) for event in raised.value.events] == [BadFrame]
    assert decoder.bad_frames_fed == 1


def test_truncated_pickle_inside_a_complete_frame_is_a_bad_frame() -> None:
    payload = one_frame_payload("cut short")
    cut = payload[: len(payload) // 2]

    [event] = FrameDecoder().feed(frame_of(cut))

    assert isinstance(event, BadFrame)
    assert event.raw == cut
    assert "truncated" in event.reason


def test_decoder_keeps_going_after_many_bad_frames() -> None:
    decoder = FrameDecoder()
    junk = frame_of(b"\xff\xfe")

    events = decoder.feed(junk * 500 + make_frame(log_record("still alive")))

    assert all(isinstance(event, BadFrame) for event in events[:-1])
    assert len(events) == 501
    assert decoded(events[-1])["msg"] == "still alive"


# --------------------------------------------------------------------------- decoded size and depth limits


def test_record_larger_than_max_decoded_bytes_is_a_bad_frame() -> None:
    frame = make_frame(log_record("x" * 10_000))

    [small] = FrameDecoder(DecodeLimits(max_decoded_bytes=5_000)).feed(frame)
    [large] = FrameDecoder(DecodeLimits(max_decoded_bytes=50_000)).feed(frame)

    assert isinstance(small, BadFrame)
    assert "maximum decoded size" in small.reason
    assert decoded(large)["msg"] == "x" * 10_000


def test_max_depth_counts_the_record_itself_as_the_first_level() -> None:
    limits = DecodeLimits(max_depth=5)
    fits = make_frame(log_record("deep", extra={"nested": nested_lists(4)}))
    too_deep = make_frame(log_record("deeper", extra={"nested": nested_lists(5)}))

    [ok] = FrameDecoder(limits).feed(fits)
    [bad] = FrameDecoder(limits).feed(too_deep)

    assert decoded(ok)["nested"] == nested_lists(4)
    assert isinstance(bad, BadFrame)
    assert "deeper than 5 levels" in bad.reason


def test_decode_payload_returns_the_same_json_as_the_decoder() -> None:
    frame = make_frame(log_record("direct", extra={"when": AWARE}))

    [event] = FrameDecoder().feed(frame)

    assert isinstance(event, Record)
    assert decode_payload(payload_of(frame), DecodeLimits()) == event


def test_max_depth_above_the_supported_limit_is_refused() -> None:
    limit = DecodeLimits.MAX_DEPTH_LIMIT

    assert DecodeLimits(max_depth=limit).max_depth == limit
    with pytest.raises(ValueError, match="max_depth"):
        DecodeLimits(max_depth=limit + 1)


def test_nesting_at_the_largest_max_depth_is_delivered_without_exhausting_the_stack() -> None:
    limits = DecodeLimits(max_depth=DecodeLimits.MAX_DEPTH_LIMIT)
    levels = limits.max_depth - 1  # the record itself is the first level
    # Built by hand: pickle.dumps cannot always nest this deep itself.
    key = b"X\x06\x00\x00\x00nested"
    lists = b"]" * levels + b"a" * (levels - 1)
    payload = b"\x80\x02}X\x03\x00\x00\x00msgX\x02\x00\x00\x00his" + key + lists + b"s."
    one_more = payload.replace(lists, b"]" + lists + b"a")

    [event] = FrameDecoder(limits).feed(frame_of(payload))
    [too_deep] = FrameDecoder(limits).feed(frame_of(one_more))

    value: Any = decoded(event)["nested"]
    for _ in range(levels - 1):
        assert isinstance(value, list)
        [value] = value
    assert value == []
    assert isinstance(too_deep, BadFrame)
    assert f"deeper than {limits.max_depth} levels" in too_deep.reason


@pytest.mark.parametrize("name", ["datetime", "date", "time"])
def test_known_type_called_without_arguments_is_kept_opaque(name: str) -> None:
    # {"msg": "hi", "when": datetime.<name>()}: a malformed but harmless value.
    payload = (
        b"\x80\x02}X\x03\x00\x00\x00msgX\x02\x00\x00\x00hisX\x04\x00\x00\x00whencdatetime\n" + name.encode() + b"\n)Rs."
    )

    events = FrameDecoder().feed(frame_of(payload) + make_frame(log_record("next")))

    assert len(events) == 2
    assert decoded(events[0])["when"] == {"__class__": f"datetime.{name}"}
    assert decoded(events[1])["msg"] == "next"
