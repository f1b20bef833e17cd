"""The JSON formatter's record check, C against orjson, side by side.

    python -m bench.jsoncheck [--records 20000] [--repeat 5]

Over the records a catcher makes of the benchmark frames: µs per record of
``orjson.loads`` and of :func:`consumers.json_check.is_json_object`, and of
:meth:`JsonLineFormatter.format` with the C check and with the check every
record took before it (orjson only: the fallback, as ``LOGRELAY_PURE_PYTHON=1``
has it), best of ``--repeat`` runs each.  Checks first that the C check says
True for every record and that both formatters write the same bytes.
"""

from __future__ import annotations

import argparse
import json
from unittest import mock

import orjson

from bench.decode import best_us_per_item
from bench.frames import build_frames
from consumers import formatting, json_check
from relay.decode.frames import FrameDecoder, Record


def take(timings: dict[str, float], name: str, us: float) -> None:
    timings[name] = min(us, timings.get(name, us))


def run(records: int, repeat: int) -> dict[str, object]:
    events = FrameDecoder().feed(b"".join(build_frames(records)))
    jsons = [event for event in events if isinstance(event, Record)]
    assert len(jsons) == records
    if json_check.IMPLEMENTATION == "c":
        assert all(json_check.is_json_object(record) for record in jsons), "the C check refused a real record"
    fields = [
        {b"v": b"1", b"record": record, b"client": b"127.0.0.1:1", b"catcher": b"bench", b"received": b"1700000000.0"}
        for record in jsons
    ]
    by_id = {f"1700000000000-{n}".encode(): entry for n, entry in enumerate(fields)}
    entries = list(by_id)

    new = formatting.JsonLineFormatter()
    old = formatting.JsonLineFormatter()

    def format_new(entry_id: bytes) -> bytes:
        return new.format(entry_id, by_id[entry_id])

    def format_old(entry_id: bytes) -> bytes:
        with mock.patch.object(formatting, "is_json_object", json_check._not_sure):
            return old.format(entry_id, by_id[entry_id])

    assert [format_new(e) for e in entries] == [format_old(e) for e in entries]

    # Alternated, best of ``repeat`` each, so that drift of the machine hits both sides alike.
    timings: dict[str, float] = {}
    for _ in range(repeat):
        # The patch is applied around the whole timed loop, not per record.
        with mock.patch.object(formatting, "is_json_object", json_check._not_sure):
            take(timings, "old", best_us_per_item(lambda e: old.format(e, by_id[e]), entries, 1))
        take(timings, "new", best_us_per_item(format_new, entries, 1))
        take(timings, "loads", best_us_per_item(orjson.loads, jsons, 1))
        take(timings, "check", best_us_per_item(json_check.is_json_object, jsons, 1))
    old_us, new_us, loads_us, check_us = (timings[k] for k in ("old", "new", "loads", "check"))
    return {
        "records": records,
        "implementation": json_check.IMPLEMENTATION,
        "mean_record_bytes": sum(map(len, jsons)) / len(jsons),
        "non_ascii_share": sum(not record.isascii() for record in jsons) / len(jsons),
        "orjson_loads_us": loads_us,
        "is_json_object_us": check_us,
        "format_orjson_check_us": old_us,
        "format_c_check_us": new_us,
        "format_speedup": old_us / new_us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    result = run(args.records, args.repeat)
    print(json.dumps(result))
    print(
        f"check per record ({result['mean_record_bytes']:.0f} bytes): orjson.loads {result['orjson_loads_us']:.2f} µs, "
        f"is_json_object ({result['implementation']}) {result['is_json_object_us']:.2f} µs; "
        f"JsonLineFormatter.format {result['format_orjson_check_us']:.2f} -> {result['format_c_check_us']:.2f} µs "
        f"({result['format_speedup']:.2f}x)"
    )


if __name__ == "__main__":
    main()
