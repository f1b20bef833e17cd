"""CPU and peak memory per frame of the amplifier corpus (tests/support/amplifiers.py), through the catcher's decoder.

    python -m bench.frame_cost [--repeat 5] [--timeout 30] [--tree DIR] [--check] [--json FILE] [CASE ...]

Each case runs in a fresh child process that imports the decoder, builds
nothing else, and feeds the frame to ``relay.decode.frames.FrameDecoder`` ``--repeat``
times: the CPU time of one frame (the median of the repeats, from
``time.process_time``) and the growth of the child's peak RSS over its
warmed-up baseline (``ru_maxrss``).  ``--tree DIR`` decodes with another
checkout (an earlier commit, say) so that the two print side by side; a case
that runs past ``--timeout`` seconds is shown as such.  ``--check`` exits 1
if any case costs more than the bound docs/security.md states (100 ms of CPU,
64 MiB of peak memory) or gets another verdict than the corpus expects.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

from tests.support.amplifiers import AMPLIFIERS, Amplifier, frame

CPU_BOUND_MS: Final = 100.0
MEMORY_BOUND_MIB: Final = 64.0

# Runs in the child, with the decoder of the tree under test first on sys.path.
CHILD: Final = r"""
import json, resource, statistics, sys, time
from relay.decode.frames import BadFrame, DecodeLimits, FrameDecoder
data = sys.stdin.buffer.read()
repeat = int(sys.argv[1])
honest = b'\x00\x00\x00\x13\x80\x04}\x8c\x03msg\x8c\x02hi\x8c\x01v\x8c\x01ws.'
FrameDecoder(DecodeLimits()).feed(honest)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(repeat):
    start = time.process_time()
    events = FrameDecoder(DecodeLimits()).feed(data)
    times.append(time.process_time() - start)
    event = events[0]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
verdict = "refused: " + event.reason if type(event) is BadFrame else "delivered"
print(json.dumps({"cpu_ms": statistics.median(times) * 1000, "peak_mib": (peak - before) / 1024, "verdict": verdict}))
"""


def run_case(case: Amplifier, tree: Path, repeat: int, timeout: float) -> dict[str, Any]:
    """One case in a fresh child process: its cost and verdict, or a timeout."""
    payload = case.build()
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    result: dict[str, Any] = {"case": case.name, "bytes": len(payload)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(repeat)],
            input=frame(payload),
            capture_output=True,
            env=environment,
            cwd=tree,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {**result, "timeout": timeout}
    if done.returncode != 0:
        return {**result, "crashed": done.returncode, "stderr": done.stderr.decode(errors="replace")[-400:]}
    measured: dict[str, Any] = json.loads(done.stdout)
    expected = case.refused
    verdict = measured["verdict"]
    measured["as_expected"] = (
        verdict == "delivered"
        if expected is None
        else bool(re.search(expected, verdict.removeprefix("refused: "))) and verdict.startswith("refused")
    )
    return {**result, **measured}


def show(result: dict[str, Any]) -> str:
    if "timeout" in result:
        return f"{'> ' + format(result['timeout'], 'g') + ' s':>10} {'':>9} {'':>8}  still running: stopped"
    if "crashed" in result:
        return f"{'':>10} {'':>9} {'':>8}  CRASHED (exit {result['crashed']})"
    per_kib = result["cpu_ms"] * 1000 / max(result["bytes"] / 1024, 1)
    mark = "" if result["as_expected"] else "  (UNEXPECTED)"
    return f"{result['cpu_ms']:8.1f}ms {per_kib:7.1f}us {result['peak_mib']:6.1f}MiB  {result['verdict'][:70]}{mark}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--repeat", type=int, default=5, help="frames decoded per case; the median is shown")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a case may run")
    parser.add_argument("--tree", type=Path, action="append", help="a checkout to decode with (repeatable)")
    parser.add_argument("--check", action="store_true", help="exit 1 beyond the bound or on a wrong verdict")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    trees = args.tree or [Path(__file__).resolve().parent.parent]
    cases = [case for case in AMPLIFIERS if not args.cases or case.name in args.cases]
    unknown = set(args.cases) - {case.name for case in AMPLIFIERS}
    if unknown:
        parser.error(f"no such case: {', '.join(sorted(unknown))}")

    print(f"CPU per frame (median of {args.repeat}), per KiB of frame, peak RSS growth; bound "
          f"{CPU_BOUND_MS:g} ms and {MEMORY_BOUND_MIB:g} MiB")  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {str(tree): [] for tree in trees}
    for case in cases:
        print(f"\n{case.name} ({len(case.build())} bytes): {case.what}")
        for tree in trees:
            result = run_case(case, tree, args.repeat, args.timeout)
            results[str(tree)].append(result)
            label = f"  {tree.name[:14]:14} " if len(trees) > 1 else "  "
            print(label + show(result), flush=True)

    failures = []
    for tree, rows in results.items():
        measured = [row for row in rows if "cpu_ms" in row]
        if measured:
            worst_cpu = max(measured, key=lambda row: row["cpu_ms"])
            worst_memory = max(measured, key=lambda row: row["peak_mib"])
            print(
                f"\n{tree}: worst CPU {worst_cpu['cpu_ms']:.1f} ms ({worst_cpu['case']}), "
                f"worst peak memory {worst_memory['peak_mib']:.1f} MiB ({worst_memory['case']})"
            )
        for row in rows:
            over = "cpu_ms" not in row or row["cpu_ms"] > CPU_BOUND_MS or row["peak_mib"] > MEMORY_BOUND_MIB
            if over or not row.get("as_expected", False):
                failures.append(f"{tree}: {row['case']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    if failures:
        print("\nbeyond the bound or not as expected: " + ", ".join(failures))
    return 1 if args.check and failures else 0


if __name__ == "__main__":
    sys.exit(main())
