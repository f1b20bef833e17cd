"""What ``--wait-replicas 1`` costs against ``--wait-replicas 0``: ingest, end to end and latency, side by side.

    python -m bench.replicas [--records 100000] [--rounds 2] [--rate 10000] [--seconds 4]
                             [--output bench/results/replicas.json]

Every run starts its own redis-server and one replica of it (``--replicaof``,
online before the catcher starts), so both variants pay for replication
alike and only the catcher's wait differs.  The runs are the suite's
(:mod:`bench.suite`: its Stack, the load of :mod:`bench.loadgen`, FileWatch
and its exactly-once checks), the catcher with ``--wait-replicas 0`` and
``--wait-replicas 1`` alternated run by run (0, 1, then 1, 0, ...):

* ingest: frames in (64 connections from 2 processes) -> every record
  confirmed: in the master's stream and the catcher's buffer empty (read
  from its /metrics once the records are in), which with
  ``--wait-replicas 1`` is once a WAIT counted the replica.  The master's
  and the replica's streams hold each record exactly once.
* end to end: frames in -> lines in the file (catcher + JSON consumer, 64
  connections).  The consumer reads the master: the wait holds the
  catcher's buffer, not the lines.
* latency: emit -> line in the file at a fixed, moderate rate (``--rate``),
  p50 and p99.

Reported: each variant's median over the rounds, and the ratio wait 1 /
wait 0 of the medians (for latency, of the p50s and of the p99s).  Only
these same-run ratios mean much on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import suite
from bench.frames import build_frames

#: The catcher's waits compared, and the JSON keys of their runs.
WAITS = (0, 1)
CONNECTIONS = 64


def setup(wait: int, *, confirmed: bool = False) -> suite.Setup:
    """A master with one replica, the catcher asking for ``wait`` replicas."""
    return suite.Setup(catcher_args=("--wait-replicas", str(wait)), replicas=1, confirmed=confirmed)


def alternated(rounds: int) -> list[int]:
    """The waits in run order: 0, 1, then 1, 0, ... (a drift of the machine weighs on both alike)."""
    order: list[int] = []
    for n in range(rounds):
        order += WAITS if n % 2 == 0 else WAITS[::-1]
    return order


def run(records: int, *, rounds: int = 2, rate: float = 10_000, seconds: float = 4) -> dict[str, Any]:
    """Every run's figures by kind and wait, with the medians and ratios in ``summary``."""
    frames = build_frames(records)
    kinds: dict[str, Callable[[int], dict[str, Any]]] = {
        "ingest": lambda wait: suite.ingest(frames, CONNECTIONS, setup(wait, confirmed=True)),
        "end_to_end": lambda wait: suite.end_to_end(frames, CONNECTIONS, "logrelay", setup(wait)),
        "latency": lambda wait: suite.latency(rate, seconds, "logrelay", setup(wait)),
    }
    result: dict[str, Any] = {"records": records, "rounds": rounds, "rate": rate, "seconds": seconds}
    for kind, measure in kinds.items():
        runs: dict[str, list[dict[str, Any]]] = {f"wait_{wait}": [] for wait in WAITS}
        for wait in alternated(rounds):
            print(f"... replicas: {kind}, --wait-replicas {wait}", file=sys.stderr, flush=True)
            runs[f"wait_{wait}"].append(measure(wait))
        result[kind] = runs
    result["summary"] = summary(result)
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Medians of each variant's runs and the ratios wait 1 / wait 0 of those medians."""

    def median(kind: str, wait: int, key: str) -> float:
        return statistics.median(float(r[key]) for r in result[kind][f"wait_{wait}"])

    found: dict[str, Any] = {}
    for name, kind, key in (
        ("ingest_records_per_s", "ingest", "records_per_s"),
        ("end_to_end_records_per_s", "end_to_end", "records_per_s"),
        ("latency_p50_ms", "latency", "p50_ms"),
        ("latency_p99_ms", "latency", "p99_ms"),
    ):
        medians = {f"wait_{wait}": median(kind, wait, key) for wait in WAITS}
        found[name] = medians | {"ratio": medians["wait_1"] / medians["wait_0"]}
    return found


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(measurement, figure, ratio) rows for a table: the suite's, or this script's own."""
    found = result["summary"]
    count = len(result["ingest"]["wait_0"])
    runs = f"medians of {count} runs each, alternated"
    rows: list[tuple[str, str, str]] = []
    for key, name in (("ingest_records_per_s", "ingest, confirmed"), ("end_to_end_records_per_s", "end to end")):
        medians = found[key]
        rows.append(
            (f"wait-replicas 1 / 0, {name}, {CONNECTIONS} conn",
             f"{medians['wait_1']:,.0f} / {medians['wait_0']:,.0f}/s", f"{medians['ratio']:.2f}x ({runs})")
        )  # fmt: skip
    p50, p99 = found["latency_p50_ms"], found["latency_p99_ms"]
    rows.append(
        (f"wait-replicas 1 / 0, latency at {result['rate']:,.0f}/s",
         f"p50 {p50['wait_1']:.1f} / {p50['wait_0']:.1f} ms", f"p50 {p50['ratio']:.2f}x"),
    )  # fmt: skip
    rows.append(("", f"p99 {p99['wait_1']:.1f} / {p99['wait_0']:.1f} ms", f"p99 {p99['ratio']:.2f}x"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000, help="records of each ingest and end-to-end run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each variant per measurement")
    parser.add_argument("--rate", type=float, default=10_000, help="records/s of the latency runs")
    parser.add_argument("--seconds", type=float, default=4, help="length of each latency run")
    parser.add_argument("--output", type=Path, default=Path("bench/results/replicas.json"))
    args = parser.parse_args()
    result = run(args.records, rounds=args.rounds, rate=args.rate, seconds=args.seconds)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    table = rows(result)
    width = max(len(name) for name, _, _ in table)
    print(f"{'measurement':<{width}}  {'wait 1 / wait 0':>28}  ratio")
    print("-" * (width + 50))
    for name, figure, ratio in table:
        print(f"{name:<{width}}  {figure:>28}  {ratio}")
    for kind in ("ingest", "end_to_end"):
        for wait in WAITS:
            rates = ", ".join(f"{r['records_per_s']:,.0f}" for r in result[kind][f"wait_{wait}"])
            print(f"  {kind.replace('_', ' ')}, wait {wait}: {rates} records/s")
    for wait in WAITS:
        runs = ", ".join(f"{r['p50_ms']:.1f}/{r['p99_ms']:.1f}" for r in result["latency"][f"wait_{wait}"])
        print(f"  latency, wait {wait}: p50/p99 {runs} ms")
    print(f"\n(figures as JSON: {args.output})")


if __name__ == "__main__":
    main()
