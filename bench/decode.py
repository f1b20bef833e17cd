"""Decoding cost per record, C fast path against the Python path, side by side.

    python -m bench.decode [--records 20000] [--repeat 5]

Times :func:`relay.decode.frames.decode_payload` (the C pickle-to-JSON path first,
the Python path for what it leaves) and :func:`relay.decode.frames.decode_payload_python`
(scan, ``pickle.loads`` or the restricted unpickler, walk, orjson) over the
same frames of the benchmark mix, best of ``--repeat`` runs each, and
``FrameDecoder.feed`` over the whole stream in 64 KiB chunks, and one frame
per call (a connection's reads when its sender is slow: the cost of each
call, not of the frames).  Prints µs per record and the ratio; checks first
that both paths give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from bench.frames import build_frames
from relay.decode import fast_path
from relay.decode.frames import DecodeLimits, FrameDecoder, decode_payload, decode_payload_python


def best_us_per_item(function: Callable[[bytes], object], items: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            function(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def run(records: int, repeat: int) -> dict[str, object]:
    limits = DecodeLimits()
    frames = build_frames(records)
    payloads = [frame[4:] for frame in frames]
    fast_count = 0
    for payload in payloads:
        assert decode_payload(payload, limits) == decode_payload_python(payload, limits)
        budget = limits.decoded_budget(len(payload))
        fast_count += fast_path.pickle_to_json(payload, limits.max_depth, budget) is not None
    stream = b"".join(frames)
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]

    def feed_all(_: bytes) -> None:
        decoder = FrameDecoder(limits)
        for chunk in chunks:
            decoder.feed(chunk)

    def feed_one_by_one(_: bytes) -> None:
        decoder = FrameDecoder(limits)
        for frame in frames:
            decoder.feed(frame)

    python_us = best_us_per_item(lambda p: decode_payload_python(p, limits), payloads, repeat)
    fast_us = best_us_per_item(lambda p: decode_payload(p, limits), payloads, repeat)
    feed_us = best_us_per_item(feed_all, [b""], repeat) / len(frames)
    feed_per_frame_us = best_us_per_item(feed_one_by_one, [b""], repeat) / len(frames)
    return {
        "records": records,
        "fast_path": fast_path.IMPLEMENTATION,
        "fast_path_share": fast_count / len(payloads),
        "python_path_us": python_us,
        "decode_payload_us": fast_us,
        "speedup": python_us / fast_us,
        "feed_us": feed_us,
        "feed_one_frame_per_call_us": feed_per_frame_us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    result = run(args.records, args.repeat)
    print(json.dumps(result))
    print(
        f"decode per record: Python path {result['python_path_us']:.2f} µs, with the C fast path "
        f"{result['decode_payload_us']:.2f} µs ({result['speedup']:.1f}x; it took "
        f"{result['fast_path_share']:.0%} of records); FrameDecoder.feed {result['feed_us']:.2f} µs "
        f"(one frame per call: {result['feed_one_frame_per_call_us']:.2f} µs)"
    )


if __name__ == "__main__":
    main()
