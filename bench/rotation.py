"""What rotation with compression costs the file consumer: lines/s with it and without, side by side.

    python -m bench.rotation [--records 400000] [--rotate-size 64MiB] [--repeat 3]

Fills a stream (its own redis-server) with the benchmark records, then drains
it with ``logrelay consume file --format json`` in passes alternated between
rotation off and ``--rotate-size SIZE --compress gzip``, each pass in a
consumer group and a directory of its own.  Reports each configuration's best
pass in lines/s (from the first entry delivered to the last acknowledged, as
:mod:`bench.consumer` counts), the ratio, and how many segments the rotating
passes made; checks that the segments (decompressed) and the file hold each
record exactly once.  Compression runs in the consumer's keeper thread at a
lower priority, and may finish after the stream is drained: the rate is what
the writes were held up by it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench import consumer as consumer_bench
from bench.ingest import cpu_seconds
from consumers.segments import list_segments
from tests.support.polling import wait_until
from tests.support.processes import ConsumerProcess
from tests.support.realredis import RedisServer


def _pass(server: RedisServer, directory: Path, group: str, records: int, extra: list[str]) -> dict[str, object]:
    directory.mkdir()
    output = directory / "central.jsonl"
    args = ["--format", "json", "--group", group, "--trim-interval", "0", *extra]
    consumer = ConsumerProcess(server.url, output, args, directory / "consumer.log")
    consumer.start(wait_ready=False)
    wait_until(lambda: consumer_bench._entries_read(server, group) > 0, timeout=60, max_delay=0.002, what="reading")
    first_read = time.perf_counter()
    wait_until(lambda: consumer_bench._group_done(server, group, records), timeout=600, max_delay=0.01, what="done")
    end = time.perf_counter()
    cpu = cpu_seconds(consumer.pid)
    assert consumer.stop() == 0
    segments = list_segments(output)  # after the stop: the drained consumer may rotate once more
    seqs: list[int] = []
    for segment in segments:
        data = (directory / segment.name).read_bytes()
        data = gzip.decompress(data) if segment.compressed else data  # compressed, or not yet at the stop
        seqs += [json.loads(line)["bench_seq"] for line in data.splitlines()]
    seqs += [json.loads(line)["bench_seq"] for line in output.read_bytes().splitlines()]
    assert sorted(seqs) == list(range(records)), "records missing or doubled across the segments"
    bytes_written = sum((directory / s.name).stat().st_size for s in segments) + output.stat().st_size
    return {"lines_per_s": records / (end - first_read), "segments": len(segments),
            "cpu_us_per_line_with_start": cpu / records * 1e6, "bytes_on_disk": bytes_written}  # fmt: skip


def run(records: int, rotate_size: str, repeat: int) -> dict[str, object]:
    """Best pass of each configuration, and their ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            with server.client() as client:
                consumer_bench.fill(client, records)
            plain: list[dict[str, object]] = []
            rotating: list[dict[str, object]] = []
            for n in range(repeat):
                plain.append(_pass(server, Path(tmp) / f"plain-{n}", f"plain-{n}", records, []))
                extra = ["--rotate-size", rotate_size, "--compress", "gzip"]
                rotating.append(_pass(server, Path(tmp) / f"rotating-{n}", f"rotating-{n}", records, extra))
        finally:
            server.stop()
    best_plain = max(plain, key=lambda p: float(p["lines_per_s"]))  # type: ignore[arg-type]
    best_rotating = max(rotating, key=lambda p: float(p["lines_per_s"]))  # type: ignore[arg-type]
    return {
        "records": records,
        "rotate_size": rotate_size,
        "off": best_plain,
        "gzip": best_rotating,
        "ratio": float(best_rotating["lines_per_s"]) / float(best_plain["lines_per_s"]),  # type: ignore[arg-type]
        # Less at the mercy of one lucky pass than the best: the medians of the alternated passes.
        "median_ratio": statistics.median(float(p["lines_per_s"]) for p in rotating)  # type: ignore[arg-type]
        / statistics.median(float(p["lines_per_s"]) for p in plain),  # type: ignore[arg-type]
        "passes_off": [p["lines_per_s"] for p in plain],
        "passes_gzip": [p["lines_per_s"] for p in rotating],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--rotate-size", default="64MiB")
    parser.add_argument("--repeat", type=int, default=3, help="passes per configuration, alternated")
    args = parser.parse_args()
    result = run(args.records, args.rotate_size, args.repeat)
    print(json.dumps(result))
    off, gz = result["off"], result["gzip"]
    assert isinstance(off, dict)
    assert isinstance(gz, dict)
    print(f"consumer json, rotation off: {off['lines_per_s']:,.0f} lines/s")
    print(
        f"consumer json, rotating every {args.rotate_size} with gzip: {gz['lines_per_s']:,.0f} lines/s "
        f"({gz['segments']} segments), {result['ratio']:.3f}x rotation off (medians of the passes: "
        f"{result['median_ratio']:.3f}x)"
    )


if __name__ == "__main__":
    main()
