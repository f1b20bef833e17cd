"""bench.stalls: a CPU that runs nothing of the watcher's for a while shows up as a stall on that CPU."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from bench.stalls import THRESHOLD, TICK, StallWatch


def _hold_cpu(cpu: int, seconds: float) -> None:
    """Spin on ``cpu`` above the watcher's real-time priority: nothing else of this machine runs there."""
    os.sched_setaffinity(0, {cpu})
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(os.sched_get_priority_min(os.SCHED_FIFO) + 1))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _may_use_realtime() -> bool:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(os.sched_get_priority_min(os.SCHED_FIFO)))
    except PermissionError:
        return False
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return True


@pytest.mark.skipif(not _may_use_realtime(), reason="needs the right to real-time priority (root)")
def test_a_cpu_held_by_a_higher_priority_task_is_reported_as_a_stall_of_that_cpu() -> None:
    cpu = max(os.sched_getaffinity(0))
    holder = multiprocessing.get_context("spawn").Process(target=_hold_cpu, args=(cpu, 0.08))
    with StallWatch() as watch:  # returns once every watcher watches
        holder.start()
        holder.join(10)
        # The held watcher runs the moment the holder exits, and notes the gap before it looks at the stop.
    assert holder.exitcode == 0
    report = watch.report
    assert report is not None
    assert report.realtime
    held = [(at, gap) for at, gap, on in report.stalls if on == cpu]
    assert held, f"no stall on cpu {cpu}: {report.stalls}"
    assert max(gap for _, gap in held) >= 0.05
    assert report.longest_ms >= 50
    assert report.count == len(report.stalls)
    assert report.summary()["count"] == report.count
    assert report.since(max(at for at, _ in held) + 0.001).count < report.count


def test_an_undisturbed_watch_reports_only_gaps_over_the_threshold() -> None:
    with StallWatch() as watch:
        time.sleep(0.3)  # nothing is done here: the watch itself is under test
    report = watch.report
    assert report is not None
    assert report.seconds >= 0.3
    assert all(gap > TICK + THRESHOLD for _, gap, _ in report.stalls)


def test_a_watcher_that_dies_costs_its_report_not_the_run() -> None:
    with StallWatch() as watch:
        process, _ = watch._watchers[0]
        process.kill()
        process.join(5)
    report = watch.report
    assert report is not None
    assert not report.realtime  # what the dead watcher saw is unknown: the report does not claim it
