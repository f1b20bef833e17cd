"""Stalls of the machine itself, seen by a real-time thread on every CPU.

    python -m bench.stalls [--seconds 10] [--burn N]

A latency tail has two possible owners: the code under test, or the machine
it runs on (a virtual machine's CPUs are themselves scheduled by a host,
which may not run them for tens of milliseconds).  :class:`StallWatch` tells
them apart: one process per CPU, pinned to it, at real-time priority
(``SCHED_FIFO``: it runs before anything else of this machine that wants
that CPU), sleeps 2 ms at a time and notes every wake-up that came more than
``threshold`` late.  Such a gap means the CPU ran nothing of this machine's
for that long.  Without the right to real-time priority (not root) the
watchers run at normal priority, and their gaps then include plain CPU
contention: :attr:`StallReport.realtime` says which.

``--burn N`` keeps N processes spinning meanwhile, to see what the host does
to a machine whose CPUs are all busy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import os
import time
from dataclasses import asdict, dataclass, field

__all__ = ["StallReport", "StallWatch"]

TICK = 0.002  # each watcher's sleep: 500 wake-ups a second per CPU
THRESHOLD = 0.008  # a wake-up this late (beyond the tick) counts as a stall


@dataclass
class StallReport:
    """Gaps longer than the threshold, every CPU together, over one watch."""

    realtime: bool
    seconds: float
    #: (wall-clock start, duration in seconds, cpu) of each gap.
    stalls: list[tuple[float, float, int]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.stalls)

    @property
    def longest_ms(self) -> float:
        return max((gap for _, gap, _ in self.stalls), default=0.0) * 1000

    @property
    def total_ms(self) -> float:
        return sum(gap for _, gap, _ in self.stalls) * 1000

    def since(self, start: float) -> StallReport:
        """The stalls that began at or after ``start`` (wall clock)."""
        return StallReport(self.realtime, self.seconds, [stall for stall in self.stalls if stall[0] >= start])

    def summary(self) -> dict[str, object]:
        return {
            "realtime": self.realtime,
            "count": self.count,
            "total_ms": round(self.total_ms, 1),
            "longest_ms": round(self.longest_ms, 1),
        }


def _watch(cpu: int, stop: multiprocessing.synchronize.Event, out: multiprocessing.connection.Connection) -> None:
    os.sched_setaffinity(0, {cpu})
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(os.sched_get_priority_min(os.SCHED_FIFO)))
        realtime = True
    except PermissionError:
        realtime = False
    out.send("watching")
    stalls: list[tuple[float, float, int]] = []
    previous = time.perf_counter()
    while not stop.is_set():
        time.sleep(TICK)
        now = time.perf_counter()
        if now - previous > TICK + THRESHOLD:
            stalls.append((time.time() - (now - previous), now - previous, cpu))
        previous = now
    out.send((realtime, stalls))
    out.close()


def _final_report(receiving: multiprocessing.connection.Connection) -> tuple[bool, list[tuple[float, float, int]]]:
    """A watcher's (realtime, stalls); (False, []) if it died or never answered: what it saw is lost, the run is not."""
    try:
        while receiving.poll(10):
            message = receiving.recv()
            if isinstance(message, tuple):
                return message
            # "watching", when __enter__ gave up waiting for it: the report follows.
    except (EOFError, OSError):
        pass
    return False, []


class StallWatch:
    """A context manager: one watcher per CPU from ``__enter__`` to ``__exit__``; then :attr:`report`.

    ``__enter__`` returns once every watcher is watching, so the body is watched whole.
    """

    def __init__(self) -> None:
        self.report: StallReport | None = None
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._watchers: list[tuple[multiprocessing.process.BaseProcess, multiprocessing.connection.Connection]] = []
        self._started = 0.0

    def __enter__(self) -> StallWatch:
        self._started = time.monotonic()
        for cpu in sorted(os.sched_getaffinity(0)):
            receiving, sending = self._context.Pipe(duplex=False)
            process = self._context.Process(target=_watch, args=(cpu, self._stop, sending), daemon=True)
            process.start()
            sending.close()
            self._watchers.append((process, receiving))
        for _, receiving in self._watchers:
            # A watcher that does not start is reported by __exit__ (not real-time, nothing seen).
            with contextlib.suppress(EOFError, OSError):
                if receiving.poll(10):
                    receiving.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        realtime = True
        stalls: list[tuple[float, float, int]] = []
        for process, receiving in self._watchers:
            rt, found = _final_report(receiving)
            realtime = realtime and rt
            stalls += found
            receiving.close()
            process.join(5)
        self.report = StallReport(realtime, time.monotonic() - self._started, sorted(stalls))


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burn", type=int, default=0, help="processes spinning meanwhile")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    with StallWatch() as watch:
        burners = [context.Process(target=_spin, args=(args.seconds,)) for _ in range(args.burn)]
        for burner in burners:
            burner.start()
        if burners:
            for burner in burners:
                burner.join()
        else:
            time.sleep(args.seconds)  # the measurement itself: watch an idle machine this long
    assert watch.report is not None
    print(json.dumps(asdict(watch.report) | watch.report.summary()))
    print(
        f"{watch.report.count} stalls over {TICK * 1000 + THRESHOLD * 1000:.0f} ms in {args.seconds:.0f} s "
        f"({'real-time' if watch.report.realtime else 'normal priority'}), "
        f"longest {watch.report.longest_ms:.0f} ms, {watch.report.total_ms:.0f} ms in all"
    )


if __name__ == "__main__":
    main()
