"""What each C speedup buys: its work in C and in its Python reference, side by side, and the whole processes.

    python -m bench.speedups [--records 20000] [--repeat 5] [--whole]

Per module, over the records of the benchmark mix (bench/frames.py), the best
of ``--repeat`` alternated runs of the C entry point and of its Python
reference, µs per record (or per batch), and the ratio:

* ``relay.decode._cost_scan``: the cost scan of a pickle (it runs for the
  records the fast path leaves, and for every hostile frame), and the scan of
  the costliest frame the budgets allow (262,144 opcodes);
* ``relay.decode._fast_path``: a frame's pickle to its JSON;
* ``relay.publish._packing``: a batch of 1,000 records packed as one EVALSHA;
* ``consumers._json_check``: the JSON-lines formatter's check of a record;
* ``consumers._read_replies``: a read reply's entries to JSON lines, from its
  bytes (the C reader and renderer) against hiredis's lists and
  ``format()`` per entry.

With ``--whole``, also the catcher's ingest rate and the file consumer's rate
with the extensions and with ``LOGRELAY_PURE_PYTHON=1`` (``bench.ingest``,
``bench.consumer``, each in its own processes).  docs/decisions.md keeps the
figures and what was decided from them.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import hiredis

from bench.frames import build_frames
from consumers import formatting, json_check, read_replies
from relay.common.redis_protocol import bulk_string
from relay.decode import cost_scan, fast_path
from relay.decode.frames import DecodeLimits, FrameDecoder, Record, decode_payload, decode_payload_python
from relay.publish import packing
from relay.publish.script import RecordEntry


def best(function: Callable[[], object], repeat: int) -> float:
    """Least seconds one call of ``function`` took, over ``repeat`` calls."""
    least = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        least = min(least, time.perf_counter() - start)
    return least


def side_by_side(c: Callable[[], object], python: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best seconds of each, alternated so that the machine's drift hits both alike."""
    c_best = python_best = float("inf")
    for _ in range(repeat):
        c_best = min(c_best, best(c, 1))
        python_best = min(python_best, best(python, 1))
    return c_best, python_best


def reply_bytes(entries: list[tuple[bytes, list[bytes]]]) -> bytes:
    """An XREADGROUP reply (RESP2) holding ``entries`` of one stream."""
    parts = [b"*1\r\n*2\r\n", bulk_string("logrelay"), b"*%d\r\n" % len(entries)]
    for entry_id, fields in entries:
        parts.append(b"*2\r\n" + bulk_string(entry_id) + b"*%d\r\n" % len(fields))
        parts.extend(bulk_string(value) for value in fields)
    return b"".join(parts)


def micro(records: int, repeat: int) -> list[dict[str, Any]]:
    frames = build_frames(records)
    payloads = [frame[4:] for frame in frames]
    limits = DecodeLimits()
    rows: list[dict[str, Any]] = []

    def row(module: str, what: str, per: int, c_seconds: float, python_seconds: float) -> None:
        rows.append(
            {
                "module": module,
                "what": what,
                "c_us": c_seconds / per * 1e6,
                "python_us": python_seconds / per * 1e6,
                "ratio": python_seconds / c_seconds,
            }
        )

    if cost_scan.IMPLEMENTATION == "c":
        c_seconds, python_seconds = side_by_side(
            lambda: [cost_scan.scan(p) for p in payloads], lambda: [cost_scan.scan_python(p) for p in payloads], repeat
        )
        row("relay.decode._cost_scan", "scan of a record's pickle", len(payloads), c_seconds, python_seconds)
        # Opcodes that create nothing (DUP, POP): as many as the budget allows.
        costliest = b"\x80\x04}\x8c\x01vN" + b"20" * ((cost_scan.MAX_OPCODES - 10) // 2) + b"s."
        c_seconds, python_seconds = side_by_side(
            lambda: cost_scan.scan(costliest), lambda: cost_scan.scan_python(costliest), max(2, repeat // 2)
        )
        row("relay.decode._cost_scan", "scan of the costliest frame allowed", 1, c_seconds, python_seconds)

    if fast_path.IMPLEMENTATION == "c":
        c_seconds, python_seconds = side_by_side(
            lambda: [decode_payload(p, limits) for p in payloads],
            lambda: [decode_payload_python(p, limits) for p in payloads],
            repeat,
        )
        row("relay.decode._fast_path", "a record's pickle to JSON", len(payloads), c_seconds, python_seconds)

    jsons = [event for event in FrameDecoder().feed(b"".join(frames)) if isinstance(event, Record)]
    if packing.IMPLEMENTATION == "c":
        batches = [
            [RecordEntry(record, "127.0.0.1:5000", "1700000000.000001") for record in jsons[start : start + 1000]]
            for start in range(0, len(jsons), 1000)
        ]
        pack_c = packing._record_args
        assert pack_c is not None
        c_seconds, python_seconds = side_by_side(
            lambda: [pack_c(batch) for batch in batches],
            lambda: [packing.record_args_python(batch) for batch in batches],
            repeat,
        )
        row("relay.publish._packing", "a batch's records as RESP", len(jsons), c_seconds, python_seconds)

    metadata = [b"client", b"127.0.0.1:5000", b"catcher", b"bench", b"received", b"1700000000.000001"]
    entries = [(b"1700000000000-%d" % n, [b"v", b"1", b"record", record, *metadata]) for n, record in enumerate(jsons)]
    if json_check.IMPLEMENTATION == "c":
        checked = json_check.is_json_object
        c_seconds, python_seconds = side_by_side(
            lambda: [checked(record) for record in jsons],
            lambda: [json_check._not_sure(record) or formatting.load_record(record) for record in jsons],
            repeat,
        )
        what = "the check that a record is one JSON object"
        row("consumers._json_check", what, len(jsons), c_seconds, python_seconds)

    if read_replies.IMPLEMENTATION == "c":
        data = reply_bytes(entries)
        formatter = formatting.JsonLineFormatter()

        def with_c() -> object:
            kind, items = read_replies.ReplyReader().feed(data)
            assert kind == 0
            return formatter.format_items(items)

        def with_hiredis() -> object:
            parser = hiredis.Reader()
            parser.feed(data)
            [[_, items]] = parser.gets()
            return [formatter.format(entry_id, fields) for entry_id, fields in read_replies.entries_python(items)]

        c_seconds, python_seconds = side_by_side(with_c, with_hiredis, repeat)
        row("consumers._read_replies", "a read reply's bytes to JSON lines", len(entries), c_seconds, python_seconds)
    return rows


def whole(records: int) -> list[dict[str, Any]]:
    """The catcher's and the consumer's rates with and without the extensions, each in its own processes."""
    results = []
    for label, module, pattern in (
        ("catcher ingest", "bench.ingest", r"catcher ingest: ([\d,]+) records/s"),
        ("file consumer, json", "bench.consumer", r"consumer json \(fsync batch\): ([\d,]+) lines/s"),
        ("file consumer, text", "bench.consumer", r"consumer text \(fsync batch\): ([\d,]+) lines/s"),
    ):
        rates = {}
        for mode in ("c", "python"):
            environment = {key: value for key, value in os.environ.items() if key != "LOGRELAY_PURE_PYTHON"}
            if mode == "python":
                environment["LOGRELAY_PURE_PYTHON"] = "1"
            done = subprocess.run(
                [sys.executable, "-m", module, "--records", str(records)],
                capture_output=True,
                text=True,
                env=environment,
                timeout=1200,
                check=True,
            )
            match = re.search(pattern, done.stdout)
            assert match, done.stdout[-500:]
            rates[mode] = int(match.group(1).replace(",", ""))
        results.append({"process": label, **rates, "ratio": rates["c"] / rates["python"]})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--whole", action="store_true", help="also the processes' rates, C against pure Python")
    args = parser.parse_args(argv)
    print(f"{'module':26} {'work':46} {'C µs':>9} {'Python µs':>10} {'ratio':>7}")
    for row in micro(args.records, args.repeat):
        print(f"{row['module']:26} {row['what']:46} {row['c_us']:9.3f} {row['python_us']:10.3f} {row['ratio']:6.1f}x")
    if args.whole:
        print(f"\n{'process':26} {'with C':>12} {'pure Python':>12} {'ratio':>7}")
        for result in whole(max(args.records, 100_000)):
            print(f"{result['process']:26} {result['c']:>12,} {result['python']:>12,} {result['ratio']:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
