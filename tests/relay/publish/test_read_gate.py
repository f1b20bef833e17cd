"""ReadGate without sockets or Redis: when reading stops for the buffer's sake, and when it goes on.

The same limits seen through a running publisher (and a real, paused
redis-server) are in ``test_publisher.py`` and ``tests/integration``.
"""

from __future__ import annotations

import pytest

from relay.common.counters import CatcherStats
from relay.publish.read_gate import ReadGate
from tests.support.recording_flow import RecordingFlow

MIB = 1 << 20


@pytest.fixture
def flow() -> RecordingFlow:
    return RecordingFlow()


def make_gate(flow: RecordingFlow, *, buffer_bytes: int = 8 * MIB, read_ahead: int = 2 * MIB) -> ReadGate:
    return ReadGate(buffer_bytes=buffer_bytes, read_ahead=read_ahead, flow=flow, stats=CatcherStats())


def test_reading_stops_a_read_ahead_past_redis_and_goes_on_at_half_of_it(flow: RecordingFlow) -> None:
    gate = make_gate(flow)
    gate.check(3 * MIB, 2 * MIB - 1, outage=False, records=10)
    assert flow.events == []
    assert not gate.paused
    gate.check(3 * MIB, 2 * MIB, outage=False, records=10)
    assert flow.events == ["pause"]
    assert gate.paused
    assert not gate.full
    assert gate.stats.read_ahead_pauses == 1
    assert gate.stats.backpressure_pauses == 0
    # Sent, not yet confirmed: what counts is what waits unsent.
    gate.check_resume(3 * MIB, MIB + 1, outage=False)
    assert gate.paused
    gate.check_resume(3 * MIB, MIB, outage=False)
    assert flow.events == ["pause", "resume"]
    assert not gate.paused


def test_while_redis_is_away_only_the_buffer_limit_stops_reading(flow: RecordingFlow) -> None:
    gate = make_gate(flow)
    gate.check(7 * MIB, 7 * MIB, outage=True, records=10)
    assert flow.events == []
    gate.check(8 * MIB, 8 * MIB, outage=True, records=10)
    assert flow.events == ["pause"]
    assert gate.full
    assert gate.stats.backpressure_pauses == 1
    gate.check_resume(4 * MIB + 1, 4 * MIB + 1, outage=True)
    assert gate.full
    gate.check_resume(4 * MIB, 4 * MIB, outage=True)
    assert flow.events == ["pause", "resume"]
    assert not gate.paused


def test_a_full_buffer_behind_a_read_ahead_pause_pauses_once_and_resumes_under_both_limits(
    flow: RecordingFlow,
) -> None:
    gate = make_gate(flow)
    gate.check(2 * MIB, 2 * MIB, outage=False, records=10)
    gate.check(8 * MIB, 2 * MIB, outage=False, records=10)
    assert flow.events == ["pause"]
    assert gate.full
    gate.check(9 * MIB, 2 * MIB, outage=False, records=10)
    assert gate.stats.backpressure_pauses == 1  # counted once per filling, not per read
    # Under half the buffer but still a read-ahead's worth unsent: not yet.
    gate.check_resume(4 * MIB, 2 * MIB, outage=False)
    assert gate.paused
    gate.check_resume(4 * MIB, MIB, outage=False)
    assert flow.events == ["pause", "resume"]
    assert not gate.paused


def test_a_read_ahead_larger_than_the_buffer_counts_as_the_buffer(flow: RecordingFlow) -> None:
    gate = make_gate(flow, buffer_bytes=MIB, read_ahead=16 * MIB)
    gate.check(MIB, MIB, outage=False, records=10)
    assert gate.full
    # Half the buffer, not half of 16 MiB, may wait unsent when reading goes on.
    gate.check_resume(MIB // 2, MIB // 2 + 1, outage=False)
    assert gate.paused
    gate.check_resume(MIB // 2, MIB // 2, outage=False)
    assert not gate.paused


def test_a_full_buffer_says_so_once_in_the_log(flow: RecordingFlow, caplog: pytest.LogCaptureFixture) -> None:
    gate = make_gate(flow)
    for _ in range(3):
        gate.check(8 * MIB, 0, outage=True, records=1234)
        gate.check_resume(0, 0, outage=True)
    assert gate.stats.backpressure_pauses == 3
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "buffer full (1234 records, 8.0 MiB): pausing reads until Redis catches up"
    ]
