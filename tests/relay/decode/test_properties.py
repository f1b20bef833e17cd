"""Property-based fuzzing of the frame decoder and the safe unpickler.

What must hold for *any* input, however hostile:

* :class:`FrameDecoder` raises nothing but :class:`FrameTooLarge`, turns every
  complete frame into a :class:`Record` (a JSON object) or a :class:`BadFrame`
  (with a reason), gives the same result however the stream is chunked, and
  never holds more than one frame plus its header;
* :func:`decode_payload` lets only ``ValueError`` (and subclasses) escape and
  otherwise returns UTF-8 JSON of an object;
* real ``SocketHandler`` frames decode to what was logged, and mutated ones
  still obey the rules above;
* nothing a pickle names runs (marker files that a live payload would create
  never appear);
* decoding a 64 KiB payload, however it shares and nests objects, stays far
  below 64 MiB of traced memory.

Nothing here is ever fed to a raw ``pickle.loads``: the C unpickler can be made
to allocate gigabytes, which is why :mod:`relay.decode.cost_scan` exists.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import itertools
import json
import logging
import logging.handlers
import math
import pathlib
import random
import sys
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import hypothesis
import hypothesis.configuration
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.decode import cost_scan
from relay.decode.frames import BadFrame, DecodeLimits, FrameDecoder, FrameTooLarge, Record, decode_payload
from relay.decode.inert import MAX_STAND_IN_CHAIN
from relay.decode.unpickler import ForbiddenGlobal
from tests.support.strategies import (
    SEED_FRAMES,
    fuzz,
    mutated,
    payloads,
    pickle_like,
    records,
)

MAX_FRAME = 64 * 1024
SMALL_LIMITS = DecodeLimits(max_frame_bytes=MAX_FRAME)
DEFAULT_LIMITS = DecodeLimits()
MEMORY_CEILING = 64 * 1024 * 1024

# The reason FrameDecoder gives when decode_payload raised something other than
# ValueError: never expected, since decode_payload promises ValueError only.
CATCH_ALL_REASON = "undecodable record:"


# --------------------------------------------------------------------------- helpers


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def check_record_json(data: bytes) -> dict[str, Any]:
    """``data`` is strict UTF-8 JSON of an object; return it."""
    value = json.loads(data.decode("utf-8"))
    assert isinstance(value, dict), value
    return value


def check_events(events: list[Record | BadFrame]) -> None:
    for event in events:
        if isinstance(event, Record):
            assert type(event) is bytes
            check_record_json(event)
        else:
            assert isinstance(event, BadFrame), event
            assert type(event.raw) is bytes
            assert isinstance(event.reason, str)
            assert event.reason
            assert not event.reason.startswith(CATCH_ALL_REASON), event.reason


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def run_decoder(chunks: list[bytes], limits: DecodeLimits) -> tuple[list[Record | BadFrame], bool]:
    """Feed ``chunks``; return the events and whether the stream ended in FrameTooLarge.

    Any exception other than FrameTooLarge propagates and fails the test.
    """
    decoder = FrameDecoder(limits)
    events: list[Record | BadFrame] = []
    for chunk in chunks:
        too_large: FrameTooLarge | None = None
        try:
            events.extend(decoder.feed(chunk))
        except FrameTooLarge as exc:
            too_large = exc
        if too_large is not None:
            assert too_large.size > limits.max_skip_bytes == too_large.limit
            events.extend(too_large.events)
            return events, True
        assert 0 <= decoder.pending_bytes <= limits.max_frame_bytes + 4
    return events, False


def comparable(events: list[Record | BadFrame]) -> list[tuple[str, bytes]]:
    """Events without the reasons' wording (which may name object addresses)."""
    return [("record", e) if isinstance(e, Record) else ("bad", e.raw) for e in events]


def check_stream(stream: bytes, cuts: list[int], limits: DecodeLimits) -> list[Record | BadFrame]:
    """The decoder's properties for one stream in one chunking; return its events."""
    events, too_large = run_decoder(split(stream, cuts), limits)
    check_events(events)
    whole, whole_too_large = run_decoder([stream], limits)
    assert too_large == whole_too_large
    assert comparable(events) == comparable(whole), "chunking changed the result"
    hypothesis.event(f"stream: records={sum(isinstance(e, Record) for e in events) > 0} too_large={too_large}")
    return events


def check_payload(payload: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> dict[str, Any] | None:
    """decode_payload either raises ValueError with a reason or returns a JSON object."""
    reason: str | None = None
    try:
        out = decode_payload(payload, limits)
    except ValueError as exc:
        reason = str(exc)
    if reason is not None:
        assert reason
        hypothesis.event("payload refused")
        return None
    hypothesis.event("payload decoded")
    assert type(out) is bytes
    return check_record_json(out)


# --------------------------------------------------------------------------- real records


def expected(value: object) -> Any:
    """How the documentation says a value is rendered, as plain Python before JSON."""
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return repr(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, list | tuple):
        return [expected(item) for item in value]
    if isinstance(value, dict):
        return {key: expected(item) for key, item in value.items()}
    return value


def normalized(value: Any) -> Any:
    """Through JSON and back: tuples become lists, surrogate pairs join as JSON joins them."""
    return json.loads(json.dumps(value))


def same_rendering(original: object, got: Any) -> bool:
    if isinstance(original, set | frozenset):
        # A set arrives as a list of its elements, in no particular order.
        want = [normalized(expected(item)) for item in original]
        return isinstance(got, list) and len(got) == len(want) and all(got.count(w) == want.count(w) for w in want)
    if isinstance(original, list):
        return (
            isinstance(got, list)
            and len(got) == len(original)
            and all(same_rendering(o, g) for o, g in zip(original, got, strict=True))
        )
    return bool(got == normalized(expected(original)))


@fuzz(120)
@given(records())
def test_real_frames_decode_to_what_was_logged(case: tuple[bytes, logging.LogRecord, dict[str, object]]) -> None:
    data, record, extras = case
    events, too_large = run_decoder([data], DEFAULT_LIMITS)
    assert not too_large
    assert len(events) == 1
    assert isinstance(events[0], Record), events[0]
    value = check_record_json(events[0])
    assert value["msg"] == normalized(record.getMessage())
    assert value["args"] is None
    assert value["name"] == "fuzz.logger"
    assert value["levelno"] == logging.WARNING
    for key, original in extras.items():
        assert same_rendering(original, value[key]), (key, original, value[key])


# --------------------------------------------------------------------------- arbitrary streams

segments = st.one_of(
    st.binary(max_size=64),  # raw junk: its first four bytes are usually an oversized header
    st.binary(max_size=300).map(frame),  # junk in a well-formed frame
    pickle_like.map(frame),
    st.sampled_from(SEED_FRAMES),
    # Headers at the limit: a frame of exactly MAX_FRAME bytes is allowed, one more is not.
    st.integers(MAX_FRAME - 2, MAX_FRAME + 2).map(lambda n: n.to_bytes(4, "big")),
    st.integers(0, MAX_FRAME).map(lambda n: n.to_bytes(4, "big") + b"\x00" * min(n, 300)),
)
streams = st.lists(segments, max_size=6).map(b"".join) | st.binary(max_size=2000)
cut_lists = st.lists(st.integers(min_value=0), max_size=12)


@fuzz(300)
@given(streams, cut_lists)
def test_decoder_on_arbitrary_streams(stream: bytes, cuts: list[int]) -> None:
    check_stream(stream, cuts, SMALL_LIMITS)


@fuzz(20)
@given(st.integers(0, 4), cut_lists)
def test_decoder_holds_at_most_one_frame(filler: int, cuts: list[int]) -> None:
    """A maximal frame, byte by byte in places: the buffer never exceeds the frame plus its header."""
    payload = b"}." + b"\x00" * (MAX_FRAME - 2) if filler else b"." * MAX_FRAME
    stream = frame(payload) + frame(b"}.")
    events = check_stream(stream, [*cuts, 1, 2, 3, 5, MAX_FRAME + 3, MAX_FRAME + 4], SMALL_LIMITS)
    assert len(events) == 2


@fuzz(600)
@given(payloads)
def test_decode_payload_raises_only_value_error(payload: bytes) -> None:
    check_payload(payload, DEFAULT_LIMITS)
    check_payload(payload, SMALL_LIMITS)


# --------------------------------------------------------------------------- mutated real frames


@fuzz(200)
@given(mutated(), cut_lists, st.booleans())
def test_mutated_real_frames(case: tuple[bytes, bytes], cuts: list[int], followed: bool) -> None:
    data, payload = case
    check_payload(payload, DEFAULT_LIMITS)
    check_payload(payload, SMALL_LIMITS)
    check_stream(data + (SEED_FRAMES[1] if followed else b""), cuts, SMALL_LIMITS)


# --------------------------------------------------------------------------- no code execution

# Callables that run a command or code when a stock unpickler calls them.
DANGEROUS = [
    ("os", "system"),
    ("posix", "system"),
    ("os", "popen"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("__builtin__", "eval"),
    ("__builtin__", "execfile"),
    ("builtins", "compile"),
    ("builtins", "__import__"),
    ("subprocess", "Popen"),
    ("subprocess", "call"),
    ("subprocess", "check_call"),
    ("subprocess", "check_output"),
    ("subprocess", "run"),
    ("subprocess", "getoutput"),
    ("commands", "getoutput"),
    ("importlib", "import_module"),
    ("timeit", "timeit"),
    ("os.path", "os.system"),
    ("sys", "modules"),
]
# Names a payload may combine with the dangerous ones: gadgets, known value
# types and the opaque path.
GADGETS = [
    ("builtins", "getattr"),
    ("__builtin__", "getattr"),
    ("copyreg", "_reconstructor"),
    ("copy_reg", "_reconstructor"),
    ("builtins", "object"),
    ("builtins", "set"),
    ("builtins", "bytes"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
    ("datetime", "datetime"),
    ("datetime", "timezone"),
    ("zoneinfo", "ZoneInfo"),
    ("myapp.models", "User"),
]


def sbu(text: bytes) -> bytes:
    """SHORT_BINUNICODE (text shorter than 256 bytes)."""
    return b"\x8c" + bytes([len(text)]) + text


def string_op(text: bytes, style: int) -> bytes:
    """Push ``text`` with one of the string opcodes of protocols 0-4."""
    if style == 0:
        return b"S'" + text + b"'\n"
    if style == 1:
        return b"X" + len(text).to_bytes(4, "little") + text
    if style == 2:
        return b"V" + text + b"\n"
    if style == 3:
        return b"U" + bytes([len(text)]) + text  # SHORT_BINSTRING
    return sbu(text)


def global_op(module: str, name: str, stack: bool) -> bytes:
    if stack:
        return sbu(module.encode()) + sbu(name.encode()) + b"\x93"
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def arguments(marker: pathlib.Path, style: int, form: int) -> bytes:
    """Opcodes pushing an argument tuple whose call would create ``marker``."""
    path = str(marker).encode()
    command = b"touch " + path
    code = b"__import__('os').system('" + command + b"')"
    if form == 0:  # a shell command
        return b"(" + string_op(command, style) + b"t"
    if form == 1:  # Python source
        return string_op(code, style) + b"\x85"
    if form == 2:  # an argv list
        return b"((" + string_op(b"touch", style) + string_op(path, style) + b"lt"
    return b"(" + string_op(b"os", style) + string_op(b"system", style) + b"t"  # getattr/import args


@st.composite
def exploit_templates(draw: st.DrawFn, marker: pathlib.Path) -> bytes:
    """A coherent exploit: a dangerous callable applied to a command (a marker file's ``touch``)."""
    module, name = draw(st.sampled_from(DANGEROUS))
    style = draw(st.integers(0, 4))
    args = arguments(marker, style, draw(st.integers(0, 3)))
    target = global_op(module, name, draw(st.booleans()))
    call = draw(st.sampled_from(["reduce", "newobj", "newobj_ex", "inst", "obj", "build", "getattr"]))
    if call == "reduce":
        body = target + args + b"R"
    elif call == "newobj":
        body = target + args + b"\x81"
    elif call == "newobj_ex":
        body = target + args + b"}\x92"
    elif call == "inst":
        body = b"(" + string_op(b"touch " + str(marker).encode(), style) + b"i" + f"{module}\n{name}\n".encode()
    elif call == "obj":
        body = b"(" + target + string_op(b"touch " + str(marker).encode(), style) + b"o"
    elif call == "build":
        # An opaque object whose state names the dangerous callable, then a call.
        body = global_op("myapp", "Thing", False) + b")\x81}" + sbu(b"f") + target + b"sb" + target + args + b"R"
    else:
        gadget = global_op("builtins", "getattr", draw(st.booleans()))
        body = gadget + b"(" + target + sbu(b"__call__") + b"tR" + args + b"R"
    header = draw(st.sampled_from([b"", b"\x80\x02", b"\x80\x04"]))
    if draw(st.booleans()):
        return header + b"}" + sbu(b"msg") + body + b"s."
    return header + body + b"."


@st.composite
def exploit_soup(draw: st.DrawFn, marker: pathlib.Path) -> bytes:
    """Fragments of exploits in random order: most are broken, some happen to be coherent."""
    names = DANGEROUS + GADGETS
    style = draw(st.integers(0, 4))
    path = str(marker).encode()
    fragments = st.one_of(
        st.sampled_from(names).flatmap(lambda g: st.booleans().map(lambda stack: global_op(*g, stack))),
        st.integers(0, 3).map(lambda form: arguments(marker, style, form)),
        st.sampled_from([b"touch " + path, b"os", b"system", b"__call__", b"__reduce__", b"latin1"]).map(
            lambda s: string_op(s, style)
        ),
        st.sampled_from(DANGEROUS).map(lambda g: b"i" + f"{g[0]}\n{g[1]}\n".encode()),
        st.sampled_from(
            [
                *(b"(", b"t", b"\x85", b"\x86", b")", b"}", b"]", b"R", b"b", b"\x81", b"\x92", b"o", b"a", b"s"),
                *(b"e", b"u", b"l", b"2", b"0", b"N", b"\x94", b"q\x00", b"h\x00", b"q\x01", b"h\x01"),
                *(b"p0\n", b"g0\n"),
            ]
        ),
    )
    marks = b"(" * draw(st.integers(0, 3))  # most fragments need a MARK or two below them
    parts = draw(st.lists(fragments, min_size=1, max_size=16))
    header = draw(st.sampled_from([b"", b"\x80\x02", b"\x80\x04", b"\x80\x04}" + sbu(b"msg")]))
    return header + marks + b"".join(parts) + draw(st.sampled_from([b".", b"s.", b"tR.", b"R.", b"l."]))


@pytest.fixture(scope="module")
def pwn_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """Where a payload that ran would leave its marker; checked after every example and at the end."""
    path = tmp_path_factory.mktemp("pwn")
    yield path
    time.sleep(0.2)  # a child started by a payload (Popen, popen) would need a moment
    assert list(path.iterdir()) == [], "a payload ran its command"


_markers = itertools.count()


def assert_no_marker(pwn_dir: pathlib.Path) -> None:
    assert list(pwn_dir.iterdir()) == [], "a payload ran its command"


@fuzz(250)
@given(st.data())
def test_exploit_templates_are_refused_and_never_run(pwn_dir: pathlib.Path, data: st.DataObject) -> None:
    marker = pwn_dir / f"pwned-{next(_markers)}"
    payload = data.draw(exploit_templates(marker))
    # Each template names its dangerous callable before anything else can fail.
    with pytest.raises(ForbiddenGlobal, match="forbidden global"):
        decode_payload(payload, DEFAULT_LIMITS)
    assert_no_marker(pwn_dir)


@fuzz(300)
@given(st.data())
def test_exploit_soup_never_runs(pwn_dir: pathlib.Path, data: st.DataObject) -> None:
    marker = pwn_dir / f"pwned-{next(_markers)}"
    payload = data.draw(exploit_soup(marker))
    check_payload(payload, DEFAULT_LIMITS)
    FrameDecoder(SMALL_LIMITS).feed(frame(payload))
    assert_no_marker(pwn_dir)


# --------------------------------------------------------------------------- bounded memory


class Program:
    """Builds a random pickle that shares, duplicates and nests objects, keeping its stack valid.

    The result is ``{"v": [<everything the program left on the stack>]}``; with
    luck it also decodes, so the JSON walk is exercised as well as the unpickler.
    """

    HASHABLE = frozenset({"str", "int", "none", "bytes"})

    def __init__(self, rng: random.Random, size: int) -> None:
        self.rng = rng
        self.size = size
        self.out = bytearray(b"\x80\x04}" + sbu(b"v") + b"(")
        self.stack: list[str] = ["mark"]  # kinds above the record's key; the first mark is ours
        self.memo: dict[int, str] = {}

    def push(self, kind: str, ops: bytes) -> None:
        self.out += ops
        self.stack.append(kind)

    def top(self, n: int = 1) -> str:
        return self.stack[-n] if len(self.stack) >= n else "mark"

    def remember(self, index: int, ops: bytes) -> None:
        self.out += ops
        self.memo[index] = self.top()

    def step(self) -> None:
        rng, top = self.rng, self.top()
        choice = rng.randrange(17)
        if choice == 0:
            kind, op = rng.choice([("list", b"]"), ("dict", b"}"), ("set", b"\x8f")])
            self.push(kind, op)
        elif choice == 1:
            size = rng.choice([1, 10, 100, 1000, 4000, 30000 if len(self.out) < self.size // 2 else 5])
            self.push("str", b"X" + size.to_bytes(4, "little") + b"a" * size)
        elif choice == 2:
            kind, op = rng.choice([("int", b"K\x07"), ("none", b"N"), ("bytes", b"C\x03abc")])
            self.push(kind, op)
        elif choice in (3, 4) and top != "mark":
            for _ in range(rng.randrange(1, 40)):  # DUP-heavy
                self.push(top, b"2")
        elif choice == 5 and top != "mark":
            index = len(self.memo)
            self.remember(index, b"\x94")
        elif choice == 6 and top != "mark":
            index = rng.randrange(256)
            self.remember(index, b"q" + bytes([index]))
        elif choice == 7 and top != "mark":
            # Any index up to the pickle's length passes the scan.
            index = rng.randrange(len(self.out) + 1)
            self.remember(index, b"r" + index.to_bytes(4, "little"))
        elif choice in (8, 9) and self.memo:
            index = rng.choice(list(self.memo))
            for _ in range(rng.randrange(1, 20)):  # GET-heavy
                op = b"h" + bytes([index]) if index < 256 else b"j" + index.to_bytes(4, "little")
                self.push(self.memo[index], op)
        elif choice == 10 and top != "mark" and self.top(2) == "list":
            self.out += b"a"
            self.stack.pop()
        elif choice == 11 and top != "mark" and self.top(2) in self.HASHABLE and self.top(3) == "dict":
            self.out += b"s"
            del self.stack[-2:]
        elif choice == 12 and self.memo:
            # Billion laughs: a new list of two references to an earlier one, remembered in turn.
            index = rng.choice(list(self.memo))
            get = b"h" + bytes([index]) if index < 256 else b"j" + index.to_bytes(4, "little")
            self.push("list", b"(" + get * rng.randrange(2, 5) + b"l")
            self.remember(len(self.memo), b"\x94")
        elif choice == 13:
            self.push("mark", b"(")
        elif choice == 14 and "mark" in self.stack[1:]:
            self.close()
        elif choice == 15 and top in ("list", "str"):
            # Wrap the top in a value stand-in: set(list) or _codecs.encode(str, "latin1").
            index = len(self.memo)
            self.remember(index, b"\x94")
            self.out += b"0"
            self.stack.pop()
            get = b"j" + index.to_bytes(4, "little")
            if top == "list":
                name = rng.choice([b"set", b"frozenset", b"list"])
                self.push("other", b"c__builtin__\n" + name + b"\n(" + get + b"tR")
            else:
                self.push("other", b"c_codecs\nencode\n(" + get + sbu(b"latin1") + b"tR")
        elif choice == 16 and top in ("list", "dict", "bytes"):
            # A chain of stand-ins, list(list(...(x))): each level is walked lazily.  Kept well
            # below the recursion limit (see test_long_stand_in_chains_are_refused_cleanly).
            names = {"list": [b"list", b"set"], "dict": [b"dict", b"OrderedDict"], "bytes": [b"bytes"]}[top]
            depth = rng.randrange(1, 6)
            index = len(self.memo)
            self.remember(index, b"\x94")
            self.out += b"0"
            self.stack.pop()
            for _ in range(depth):
                name = rng.choice(names)
                module = b"collections" if name == b"OrderedDict" else b"__builtin__"
                self.out += b"c" + module + b"\n" + name + b"\n"
            self.out += b"j" + index.to_bytes(4, "little") + b"\x85R" * depth
            self.stack.append(top if top != "bytes" else "other")

    def close(self) -> None:
        """End the innermost open MARK with LIST, TUPLE or, over a list, APPENDS."""
        start = len(self.stack) - 1 - self.stack[::-1].index("mark")
        below = self.stack[start - 1] if start > 0 else "mark"
        if below == "list" and self.rng.random() < 0.5:
            self.out += b"e"
            del self.stack[start:]
            return
        op, kind = self.rng.choice([(b"l", "list"), (b"t", "other")])
        self.out += op
        del self.stack[start:]
        self.stack.append(kind)

    def build(self) -> bytes:
        while len(self.out) < self.size:
            self.step()
        while "mark" in self.stack[1:]:
            self.close()
        return bytes(self.out) + b"ls."


@fuzz(200)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1024, 2 * 1024, 4 * 1024, 8 * 1024, 16 * 1024, 60 * 1024]))
def test_adversarial_payloads_stay_bounded_in_memory(seed: int, size: int) -> None:
    payload = Program(random.Random(seed), size).build()
    assert len(payload) <= MAX_FRAME + 8 * 1024
    tracemalloc.start()
    try:
        check_payload(payload, DEFAULT_LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_CEILING, f"decoding a {len(payload)}-byte payload traced {peak} bytes"


def test_frame_opcode_length_is_bounded() -> None:
    payload = b"\x80\x04\x95" + (1 << 30).to_bytes(8, "little") + b"N."
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="truncated"):
            decode_payload(payload, DEFAULT_LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_CEILING, f"a {len(payload)}-byte payload traced {peak} bytes"


# --------------------------------------------------------------------------- known problems (reproducers)


def stand_in_chain(name: bytes, inner: bytes, depth: int, module: bytes = b"__builtin__") -> bytes:
    """``{"v": name(name(...name(inner)))}``, ``depth`` calls deep; the global is memoized once."""
    head = b"\x80\x04}" + sbu(b"v") + b"c" + module + b"\n" + name + b"\n\x940"
    return head + b"h\x00" * depth + inner + b"\x85R" * depth + b"s."


@pytest.mark.parametrize(("name", "inner"), [(b"bytes", b"C\x01x"), (b"list", b"]"), (b"dict", b"}")])
def test_long_stand_in_chains_are_refused_cleanly(name: bytes, inner: bytes) -> None:
    payload = stand_in_chain(name, inner, 2000)  # 8 KB
    escaped = None
    try:
        decode_payload(payload, DEFAULT_LIMITS)  # decoding or a ValueError are both fine
    except ValueError:
        pass
    except RecursionError as exc:  # caught here: pytest takes seconds to format its traceback
        escaped = repr(exc)
    assert escaped is None, f"{escaped} escaped decode_payload"


def python_steps(payload: bytes) -> int:
    """Python-level steps spent decoding ``payload``: calls, returns and generator resumptions.

    A deterministic measure of work (unlike a clock, it does not change with
    the machine's load): a cost that grows with nesting times size shows as
    steps that grow with it.
    """
    steps = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal steps
        steps += 1

    sys.setprofile(count)
    try:
        with contextlib.suppress(ValueError):
            decode_payload(payload, DEFAULT_LIMITS)
    finally:
        sys.setprofile(None)
    return steps


@pytest.mark.parametrize("depth", [2, MAX_STAND_IN_CHAIN - 1, MAX_STAND_IN_CHAIN + 1, 600])
def test_stand_in_chain_cost_does_not_grow_with_its_length(depth: int) -> None:
    # Nested generators (each level re-yielding the level below) cost
    # depth x items: 1.3 million steps at depth 31 against 120,000 flat.
    items = b"(" + b"N" * 20_000 + b"l"
    flat = python_steps(stand_in_chain(b"list", items, 1))
    chained = python_steps(stand_in_chain(b"list", items, depth))
    assert chained <= flat + 100 * depth, f"{depth}-level chain: {chained} steps, 1 level: {flat}"


def colliding_keys(count: int) -> bytes:
    """``{"v": {k1: None, k2: None, ...}}`` with ints that all hash alike (multiples of 2**61 - 1)."""
    body = bytearray(b"\x80\x04}" + sbu(b"v") + b"}(")
    for j in range(1, count + 1):
        key = j * (2**61 - 1)
        data = key.to_bytes((key.bit_length() + 8) // 8, "little", signed=True)
        body += b"\x8a" + bytes([len(data)]) + data + b"N"
    return bytes(body + b"us.")


def test_colliding_int_keys_beyond_the_hash_budget_are_refused_by_the_scan() -> None:
    # Keys that all hash alike cost quadratic time in a dict; the scan, which
    # builds nothing, caps the non-string keys per record so that no such dict is built.
    payload = colliding_keys(cost_scan.MAX_HASHED + 1)
    with pytest.raises(cost_scan.UnsafePickle, match=f"weigh more than {cost_scan.MAX_HASHED}"):
        cost_scan.scan(payload)
    with pytest.raises(ValueError, match=f"weigh more than {cost_scan.MAX_HASHED}"):
        decode_payload(payload, DEFAULT_LIMITS)


def test_colliding_int_keys_within_the_hash_budget_still_decode() -> None:
    decoded = json.loads(decode_payload(colliding_keys(cost_scan.MAX_HASHED), DEFAULT_LIMITS))
    assert len(decoded["v"]) == cost_scan.MAX_HASHED


# --------------------------------------------------------------------------- the C scan against its reference

c_scan = cost_scan._c_scan


def scan_verdict(data: bytes) -> object:
    """The reference's verdict: the flags, or the reason it refuses."""
    try:
        return cost_scan.scan_python(data)
    except cost_scan.UnsafePickle as exc:
        return str(exc)


def c_verdict(data: bytes) -> object:
    """The C scan's verdict: the flags, or the reason it refuses (the same text as the reference's)."""
    assert c_scan is not None
    return c_scan(data)


needs_c = pytest.mark.skipif(c_scan is None, reason="the C scan is not built here")


@needs_c
@fuzz(1000)
@given(payloads)
def test_c_scan_agrees_with_the_python_reference(payload: bytes) -> None:
    assert c_verdict(payload) == scan_verdict(payload)


@needs_c
@fuzz(400)
@given(mutated())
def test_c_scan_agrees_on_mutated_real_frames(case: tuple[bytes, bytes]) -> None:
    _, payload = case
    assert c_verdict(payload) == scan_verdict(payload)
    # Every prefix: truncation at each point must be judged alike.
    for end in range(0, len(payload), max(1, len(payload) // 40)):
        assert c_verdict(payload[:end]) == scan_verdict(payload[:end])


# --------------------------------------------------------------------------- the flat-record shortcut

scalars = st.one_of(
    st.text(max_size=40),
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=2),
    st.binary(max_size=4),
)


@fuzz(400)
@given(st.dictionaries(st.text(max_size=10), scalars, max_size=12), st.integers(0, 900))
def test_the_flat_shortcut_writes_what_the_walk_would(record: dict[str, object], budget: int) -> None:
    import orjson

    from relay.decode.to_json import DecodeLimitExceeded, flat_record_json, to_json_value

    walked = to_json_value(record, max_depth=2, max_bytes=10**6)
    try:
        flat = flat_record_json(record, budget)
    except DecodeLimitExceeded:
        assert len(orjson.dumps(walked)) > budget
        return
    if flat is not None:
        assert json.loads(flat) == json.loads(orjson.dumps(walked))
        assert len(flat) <= budget


def test_the_flat_shortcut_takes_plain_records_and_leaves_the_rest() -> None:
    from relay.decode.to_json import flat_record_json

    assert flat_record_json({"msg": "m", "n": 1, "f": 0.5, "none": None, "ok": True}, 1000) is not None
    for odd in ({"v": math.nan}, {"v": 2**64}, {"v": "\ud800"}, {"v": [1]}, {1: "x"}):
        assert flat_record_json(odd, 1000) is None, odd
    assert flat_record_json({"msg": ":null"}, 1000) is None  # ambiguous with NaN: the walk decides
