"""A live catcher under attack, an honest client beside it: CPU and memory per hostile frame.

    python -m bench.attack [--tree DIR ...] [--phases corpus,partial,mixed] [--repeat 3] [--timeout 20]
                           [--partial-connections 300] [--mixed-seconds 10]

Starts a redis-server and ``logrelay catch`` (from each ``--tree``, the
checkout under test by default) on free loopback ports, and:

* corpus: sends each case of tests/support/amplifiers.py ``--repeat`` times on one
  connection and waits until the catcher answered each (a record or a dead
  letter); prints the catcher's CPU per frame (its threads' on-CPU time, from
  /proc/PID/task/*/schedstat) and its RSS.  A case the catcher has not
  answered within ``--timeout`` seconds is shown as such, and the catcher is
  restarted for the next one;
* partial: ``--partial-connections`` connections each send a nearly complete
  1 MiB frame and stop; prints the catcher's RSS while they hold them and
  after they close, and whether an honest client's records still arrive;
* mixed: an honest client logs 500 records a second for ``--mixed-seconds``
  while another connection sends the corpus over and over; prints how many
  honest records arrived, their delay (the catcher's receipt time less the
  record's creation) and the catcher's CPU.

Every load loop is bounded in count and time; all traffic is on loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import logging.handlers
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import redis

from tests.support.amplifiers import AMPLIFIERS, frame
from tests.support.processes import CatcherProcess
from tests.support.realredis import RedisServer

MIB: Final = 1024 * 1024
DEAD: Final = "{logrelay}:dead"


def cpu_seconds(pid: int) -> float:
    """On-CPU time of every thread of ``pid`` so far (nanosecond schedstat, not 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (the peak) of ``pid``, MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def answered(client: redis.Redis) -> int:
    """Records and dead letters the catcher wrote so far."""
    return int(client.xlen("logrelay")) + int(client.xlen(DEAD))


@contextlib.contextmanager
def running_catcher(workdir: Path, tree: Path, *extra: str) -> Iterator[tuple[RedisServer, CatcherProcess]]:
    """A fresh redis-server and catcher, the catcher's code from ``tree``."""
    server = RedisServer(workdir / f"redis-{time.monotonic_ns()}").start()
    os.environ["PYTHONPATH"] = str(tree)
    catcher = CatcherProcess(server.url, ["--max-connections", "5000", *extra], workdir / "catcher.log")
    here = Path.cwd()
    try:
        # ``python -m relay`` looks in its working directory first.
        os.chdir(tree)
        try:
            catcher.start()
        finally:
            os.chdir(here)
        yield server, catcher
    finally:
        catcher.kill()
        server.stop()


def corpus_phase(workdir: Path, tree: Path, repeat: int, timeout: float) -> list[dict[str, Any]]:
    rows = []
    context = running_catcher(workdir, tree)
    server, catcher = context.__enter__()
    try:
        for case in AMPLIFIERS:
            data = frame(case.build())
            with server.client() as client:
                before_count = answered(client)
                before_cpu = cpu_seconds(catcher.pid)
                started = time.monotonic()
                with socket.create_connection(("127.0.0.1", catcher.port)) as sock:
                    sock.settimeout(timeout)
                    for _ in range(repeat):
                        with contextlib.suppress(OSError):
                            sock.sendall(data)
                    while answered(client) < before_count + repeat and time.monotonic() - started < timeout:
                        time.sleep(0.02)
                done = answered(client) >= before_count + repeat
                row: dict[str, Any] = {"case": case.name, "bytes": len(data) - 4, **memory(catcher.pid)}
                if done:
                    row["cpu_ms"] = (cpu_seconds(catcher.pid) - before_cpu) * 1000 / repeat
                else:
                    row["timeout"] = timeout
            rows.append(row)
            print(f"  {case.name:28} {show_corpus(row)}", flush=True)
            if not done:
                context.__exit__(None, None, None)
                context = running_catcher(workdir, tree)
                server, catcher = context.__enter__()
    finally:
        context.__exit__(None, None, None)
    return rows


def show_corpus(row: dict[str, Any]) -> str:
    rss = f"RSS {row['VmRSS']:6.1f} MiB, peak {row['VmHWM']:6.1f} MiB"
    if "timeout" in row:
        return f"not answered within {row['timeout']:g} s ({rss})"
    return f"{row['cpu_ms']:8.1f} ms of CPU per frame  ({rss})"


class HonestClient(threading.Thread):
    """A stock SocketHandler logging numbered records at a steady rate, for a bounded count."""

    def __init__(self, port: int, rate: float, count: int) -> None:
        super().__init__(daemon=True)
        self.rate, self.count = rate, count
        self.handler = logging.handlers.SocketHandler("127.0.0.1", port)
        self.logger = logging.Logger(f"honest-{port}")
        self.logger.addHandler(self.handler)

    def run(self) -> None:
        start = time.monotonic()
        for seq in range(self.count):
            delay = start + seq / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.logger.info("honest %d", seq, extra={"honest_seq": seq})
        self.handler.close()


def honest_records(client: redis.Redis) -> list[tuple[int, float]]:
    """(seq, delay in seconds from creation to the catcher's receipt) of every honest record in the stream."""
    found = []
    for _, fields in client.xrange("logrelay"):
        record = json.loads(fields[b"record"])
        if "honest_seq" in record:
            found.append((record["honest_seq"], float(fields[b"received"]) - record["created"]))
    return found


def partial_phase(workdir: Path, tree: Path, connections: int) -> dict[str, Any]:
    with running_catcher(workdir, tree) as (server, catcher):
        before = memory(catcher.pid)
        payload_size = MIB - 64
        chunk = b"x" * (payload_size - 100)
        sockets = []
        for _ in range(connections):
            sock = socket.create_connection(("127.0.0.1", catcher.port))
            sock.setblocking(False)
            sockets.append([sock, memoryview(payload_size.to_bytes(4, "big") + chunk)])
        deadline = time.monotonic() + 60
        progress = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - progress < 3:
            for entry in sockets:
                sock, rest = entry
                if rest:
                    with contextlib.suppress(BlockingIOError):
                        sent = sock.send(rest)
                        entry[1] = rest[sent:]
                        progress = time.monotonic()
            time.sleep(0.01)
        holding = memory(catcher.pid)
        honest = HonestClient(catcher.port, rate=200, count=200)
        honest.start()
        honest.join(timeout=30)
        with server.client() as client:
            deadline = time.monotonic() + 10
            while len(honest_records(client)) < 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            arrived = len(honest_records(client))
        for sock, _ in sockets:
            sock.close()
        time.sleep(2)
        after = memory(catcher.pid)
    return {
        "connections": connections,
        "rss_before": before["VmRSS"],
        "rss_holding": holding["VmRSS"],
        "rss_after_close": after["VmRSS"],
        "peak": after["VmHWM"],
        "honest_arrived": arrived,
        "honest_sent": 200,
    }


def mixed_phase(workdir: Path, tree: Path, seconds: float) -> dict[str, Any]:
    rate = 500
    count = int(rate * seconds)
    frames = [frame(case.build()) for case in AMPLIFIERS if not case.name.startswith("honest")]
    with running_catcher(workdir, tree) as (server, catcher):
        before_cpu = cpu_seconds(catcher.pid)
        honest = HonestClient(catcher.port, rate=rate, count=count)
        honest.start()
        sent_frames = 0
        stop = time.monotonic() + seconds
        with socket.create_connection(("127.0.0.1", catcher.port)) as sock:
            sock.settimeout(5)
            while time.monotonic() < stop and honest.is_alive():
                with contextlib.suppress(OSError):
                    sock.sendall(frames[sent_frames % len(frames)])
                sent_frames += 1
        honest.join(timeout=seconds + 30)
        with server.client() as client:
            deadline = time.monotonic() + 30
            while len(honest_records(client)) < count and time.monotonic() < deadline:
                time.sleep(0.1)
            found = honest_records(client)
        cpu = cpu_seconds(catcher.pid) - before_cpu
        rss = memory(catcher.pid)
    delays = sorted(delay for _, delay in found)
    seqs = sorted(seq for seq, _ in found)
    return {
        "honest_sent": count,
        "honest_arrived": len(found),
        "honest_once_each": seqs == list(range(len(seqs))) and len(set(seqs)) == len(seqs),
        "delay_p50_ms": statistics.median(delays) * 1000 if delays else None,
        "delay_p99_ms": delays[int(len(delays) * 0.99) - 1] * 1000 if delays else None,
        "delay_max_ms": delays[-1] * 1000 if delays else None,
        "hostile_frames_sent": sent_frames,
        "catcher_cpu_seconds": cpu,
        **rss,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, action="append", help="a checkout whose catcher to attack (repeatable)")
    parser.add_argument("--phases", default="corpus,partial,mixed")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--partial-connections", type=int, default=300)
    parser.add_argument("--mixed-seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    trees = args.tree or [Path(__file__).resolve().parent.parent]
    phases = args.phases.split(",")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="logrelay-attack-") as directory:
        workdir = Path(directory)
        for tree in trees:
            print(f"== {tree}")
            result: dict[str, Any] = results.setdefault(str(tree), {})
            if "corpus" in phases:
                print(f"corpus: each case {args.repeat} times on one connection")
                result["corpus"] = corpus_phase(workdir, tree, args.repeat, args.timeout)
            if "partial" in phases:
                result["partial"] = partial = partial_phase(workdir, tree, args.partial_connections)
                print(
                    f"partial: {partial['connections']} connections holding a nearly complete 1 MiB frame: RSS "
                    f"{partial['rss_before']:.0f} -> {partial['rss_holding']:.0f} MiB while held, "
                    f"{partial['rss_after_close']:.0f} MiB after they closed (peak {partial['peak']:.0f}); "
                    f"honest records meanwhile: {partial['honest_arrived']} of {partial['honest_sent']}"
                )
            if "mixed" in phases:
                result["mixed"] = mixed = mixed_phase(workdir, tree, args.mixed_seconds)
                print(
                    f"mixed: {mixed['hostile_frames_sent']} hostile frames beside an honest client: "
                    f"{mixed['honest_arrived']} of {mixed['honest_sent']} honest records "
                    f"(each once, in order: {mixed['honest_once_each']}), delay p50 "
                    f"{mixed['delay_p50_ms']:.1f} ms, p99 {mixed['delay_p99_ms']:.1f} ms, "
                    f"max {mixed['delay_max_ms']:.1f} ms; catcher CPU {mixed['catcher_cpu_seconds']:.1f} s, "
                    f"RSS {mixed['VmRSS']:.0f} MiB (peak {mixed['VmHWM']:.0f})"
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
