"""The amplifier corpus (tests/support/amplifiers.py) through the decoder alone.

Every case gets the verdict the corpus names: refused with that reason (a
dead letter), or delivered as an inert record.  Costs that no clock is
needed to see are asserted here: traced memory, Python steps, and the scan
refusing before anything is built.  CPU time per frame is measured by
``python -m bench.frame_cost`` (it prints, it does not assert).  The same
corpus goes through a live catcher in tests/integration/test_attack.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import struct
import sys
import tracemalloc
from typing import Any

import pytest

from relay.decode import cost_scan, fast_path, inert
from relay.decode.frames import BadFrame, DecodeLimits, FrameDecoder, decode_payload_python
from tests.support.amplifiers import AMPLIFIERS, Amplifier, frame

LIMITS = DecodeLimits()
MEMORY_CEILING = 64 * 1024 * 1024


def decode_frame(payload: bytes) -> bytes | BadFrame:
    [event] = FrameDecoder(LIMITS).feed(frame(payload))
    return event


@pytest.mark.parametrize("case", AMPLIFIERS, ids=[case.name for case in AMPLIFIERS])
def test_each_amplifier_gets_its_verdict_within_the_memory_bound(case: Amplifier) -> None:
    payload = case.build()
    assert len(payload) <= LIMITS.max_frame_bytes
    tracemalloc.start()
    try:
        event = decode_frame(payload)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if case.refused is None:
        assert not isinstance(event, BadFrame), event.reason
        assert isinstance(json.loads(event), dict)
    else:
        assert isinstance(event, BadFrame), "delivered, expected a refusal"
        assert re.search(case.refused, event.reason), event.reason
    assert peak - len(payload) < MEMORY_CEILING, f"{peak} bytes traced"


REFUSED_BY_THE_SCAN = [
    "hash-flood-tuples",
    "shared-tuple-key",
    "empty-sets",
    "empty-dicts-in-a-list",
    "opaque-appends",
    "opaque-setitems",
    "find-class-flood",
    "reduce-shared-arguments",
    "decimal-int-texts",
    "colliding-int-keys",
    "memo-index-bomb",
]


@pytest.mark.parametrize("name", REFUSED_BY_THE_SCAN)
def test_work_amplifiers_are_refused_before_anything_is_built(name: str) -> None:
    # The unpickler never sees these: the scan's model of its work refuses them.
    [case] = [case for case in AMPLIFIERS if case.name == name]
    payload = case.build()
    with pytest.raises(cost_scan.UnsafePickle, match=case.refused):
        cost_scan.scan(payload)
    with pytest.raises(cost_scan.UnsafePickle, match=case.refused):
        cost_scan.scan_python(payload)


def rebuild_calls(payload: bytes) -> int:
    """Python calls into the stand-ins and zoneinfo while decoding ``payload``: work, counted without a clock."""
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        filename = frame.f_code.co_filename
        calls += event == "call" and ("decode/inert" in filename or "zoneinfo" in filename)

    sys.setprofile(count)
    try:
        with contextlib.suppress(ValueError):
            decode_payload_python(payload, LIMITS)
    finally:
        sys.setprofile(None)
    return calls


def zone_record(references: int) -> bytes:
    """One time with a zone that does not exist, referenced ``references`` times in a list."""
    zone = b"cbuiltins\ngetattr\nczoneinfo\nZoneInfo\n\x8c\t_unpickle\x86R(\x8c\x0cNo/Such_Zone"
    time = b"cdatetime\ntime\n(C\x06\x0c\x00\x00\x00\x00\x00" + zone + b"K\x01tRtR\x94"
    return b"\x80\x04}\x8c\x01v]" + time + b"0(" + b"h\x00" * references + b"es."


def test_a_stand_in_is_rebuilt_once_however_often_it_is_referenced() -> None:
    # One rebuild (with its zone lookup, ~60 µs when the zone is missing) per
    # object, not per reference: the calls do not grow with the references.
    few, many = rebuild_calls(zone_record(10)), rebuild_calls(zone_record(10_000))
    assert few > 0
    assert many == few, f"10 references: {few} calls, 10,000: {many}"
    assert json.loads(decode_frame(zone_record(3)))["v"] == ["12:00:00"] * 3


def test_a_record_naming_more_zones_than_the_limit_is_refused() -> None:
    getattr_ = b"cbuiltins\ngetattr\nczoneinfo\nZoneInfo\n\x8c\t_unpickle\x86R\x94"

    def record(zones: int) -> bytes:
        times = b"".join(
            b"cdatetime\ntime\n(C\x06\x0c\x00\x00\x00\x00\x00h\x00(\x8c" + bytes([len(key)]) + key + b"K\x01tRtR"
            for key in (b"No/Zone_%d" % i for i in range(zones))
        )
        return b"\x80\x04}\x8c\x01v]" + getattr_ + b"0(" + times + b"es."

    assert isinstance(json.loads(decode_frame(record(inert.MAX_ZONES))), dict)
    event = decode_frame(record(inert.MAX_ZONES + 1))
    assert isinstance(event, BadFrame)
    assert f"more than {inert.MAX_ZONES} time zones" in event.reason


def test_a_honest_neighbour_decodes_the_same_after_every_amplifier() -> None:
    honest = next(case for case in AMPLIFIERS if case.name == "honest-typical").build()
    before = decode_frame(honest)
    stream = b"".join(frame(case.build()) for case in AMPLIFIERS) + frame(honest)
    events = FrameDecoder(LIMITS).feed(stream)
    assert len(events) == len(AMPLIFIERS) + 1
    assert events[-1] == before


# --------------------------------------------------------------------------- the C fast path's float text

C_PATH = pytest.mark.skipif(fast_path.IMPLEMENTATION != "c", reason="the C fast path is not built here")

LONGEST_FLOATS = [
    -1.2345678901234567e-308,
    -2.2250738585072014e-308,
    -1.7976931348623157e308,
    -9.999999999999999e-300,
    -0.00001234567890123456,
    -5e-324,
]


@C_PATH
@pytest.mark.parametrize("value", LONGEST_FLOATS)
@pytest.mark.parametrize("position", range(248, 264))
def test_the_longest_float_texts_at_every_node_near_a_block_end_match_the_python_path(
    value: float, position: int
) -> None:
    # A dict (node 0), its key (1), a list (2), ints up to the float's node.
    payload = b"\x80\x02}X\x01\x00\x00\x00a](" + b"K\x01" * (position - 3) + b"G" + struct.pack(">d", value) + b"es."
    budget = LIMITS.decoded_budget(len(payload))
    fast = fast_path.pickle_to_json(payload, LIMITS.max_depth, budget)
    assert fast is not None
    assert fast == decode_payload_python(payload, LIMITS)
    assert json.loads(fast)["a"][-1] == value
