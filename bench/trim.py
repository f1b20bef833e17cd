"""What trimming a long stream costs the other clients of Redis.

    python -m bench.trim [--entries 600000] [--rounds 2]

Fills a stream (its own redis-server) with entries shaped like the
catcher's (five fields, a 700-byte record), then deletes them below the
newest while another client sends one XADD after the other, and prints that
client's round-trip percentiles during the trim.  Each round runs, side by
side: :class:`consumers.trimmer.StreamTrimmer` as it is (steps of
:data:`~consumers.trimmer.TRIM_STEP`, each followed by a pause as long as
it took), steps of 10,000 and of ``TRIM_STEP`` sent back to back, and one
exact ``XTRIM MINID``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis
from redis.asyncio import Redis

from consumers.trimmer import TRIM_STEP, StreamTrimmer
from tests.support.realredis import RedisServer

STREAM = "bench-trim"
FIELDS = {"v": b"1", "record": b"x" * 700, "client": b"127.0.0.1:50000", "catcher": b"bench", "received": b"1.0"}


def fill(client: redis.Redis, entries: int) -> bytes:
    """``entries`` entries in a stream with one group that has read them all; the newest id."""
    client.delete(STREAM, "bench-other")
    pipe = client.pipeline(transaction=False)
    for n in range(entries):
        pipe.xadd(STREAM, FIELDS)
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    # Nothing pending and everything delivered: the trimmer may remove all but the newest.
    client.xgroup_create(STREAM, "bench", id="$")
    newest: bytes = client.xrevrange(STREAM, count=1)[0][0]
    return newest


async def in_steps(redis: Redis, point: bytes, step: int) -> None:
    while await redis.xtrim(STREAM, minid=point, approximate=True, limit=step):
        pass
    await redis.xtrim(STREAM, minid=point, approximate=False)


async def measure(url: str, trim: Callable[[Redis, bytes], Awaitable[object]], point: bytes) -> dict[str, float]:
    """Another client's XADD round trips while ``trim`` runs."""
    trimming, other = Redis.from_url(url), Redis.from_url(url)
    rounds: list[float] = []
    done = asyncio.Event()

    async def ping() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await other.xadd("bench-other", {"f": "v"})
            rounds.append(time.perf_counter() - started)

    pinger = asyncio.create_task(ping())
    started = time.perf_counter()
    try:
        await trim(trimming, point)
    finally:
        took = time.perf_counter() - started
        done.set()
        await pinger
        await trimming.aclose()
        await other.aclose()
    rounds.sort()
    return {
        "trim_ms": took * 1000,
        "p50_ms": rounds[len(rounds) // 2] * 1000,
        "p99_ms": rounds[int(len(rounds) * 0.99)] * 1000,
        "max_ms": rounds[-1] * 1000,
    }


async def as_the_trimmer(redis: Redis, point: bytes) -> None:
    await StreamTrimmer(redis, STREAM).trim()


VARIANTS: dict[str, Callable[[Redis, bytes], Awaitable[object]]] = {
    f"StreamTrimmer (steps of {TRIM_STEP:,}, paused)": as_the_trimmer,
    "steps of 10,000 back to back": lambda redis, point: in_steps(redis, point, 10_000),
    f"steps of {TRIM_STEP:,} back to back": lambda redis, point: in_steps(redis, point, TRIM_STEP),
    "one exact XTRIM MINID": lambda redis, point: redis.xtrim(STREAM, minid=point, approximate=False),
}


def run(entries: int, rounds: int) -> list[dict[str, object]]:
    """Every variant, ``rounds`` times over, each on a stream of ``entries`` (checked emptied but for the newest)."""
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            client = server.client()
            for _ in range(rounds):
                for name, trim in VARIANTS.items():
                    point = fill(client, entries)
                    found = asyncio.run(measure(server.url, trim, point))
                    left = client.xlen(STREAM)
                    if left != 1:
                        raise AssertionError(f"{name}: {left} entries left, expected only the newest")
                    results.append({"variant": name, "entries": entries, **found})
            client.close()
        finally:
            server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=600_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"trimming {args.entries:,} entries; another client's XADD round trips meanwhile")
    for found in run(args.entries, args.rounds):
        print(
            f"  {found['variant']:<40} trim {found['trim_ms']:6.0f} ms;  other client p50 {found['p50_ms']:5.2f}"
            f"  p99 {found['p99_ms']:5.2f}  max {found['max_ms']:6.2f} ms"
        )


if __name__ == "__main__":
    main()
