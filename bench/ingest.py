"""Catcher ingest rate into Redis: pre-encoded frames over C connections from separate processes.

    python -m bench.ingest [--records 200000] [--connections 64] [--processes 2] [--idle N]

Starts its own redis-server and one ``logrelay catch`` process, sends the
frames as fast as the catcher reads them, and reports records/s from the first
byte sent until the last record is in the stream, after checking that every
record is there exactly once.  Also reports the catcher's peak RSS and the CPU
the catcher and Redis spent per record.  ``--idle N`` holds N more
connections open and silent through the run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import tempfile
import time
from pathlib import Path

import redis

from bench.frames import build_frames
from relay.server import raise_fd_limit
from tests.support.clients import read_stream
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess
from tests.support.realredis import RedisServer


def send(port: int, frames: list[bytes], connections: int, start: float) -> None:
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    while time.time() < start:
        time.sleep(0.001)
    # Round-robin batches of frames over the connections, as many clients would.
    chunk = 64
    for index in range(0, len(frames), chunk):
        socks[(index // chunk) % connections].sendall(b"".join(frames[index : index + chunk]))
    for sock in socks:
        sock.close()


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(records: int, connections: int, processes: int, extra_args: list[str], idle: int = 0) -> dict[str, float]:
    frames = build_frames(records)
    if idle:
        raise_fd_limit(idle + 1024)
        extra_args = ["--max-connections", str(idle + connections + 100), "--max-connections-per-client", "0",
                      *extra_args]  # fmt: skip
    held: list[socket.socket] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        catcher = CatcherProcess(server.url, extra_args, Path(tmp) / "catcher.log")
        try:
            catcher.start()
            # Connections that stay silent through the run (a fleet's quiet services).
            held = [socket.create_connection(("127.0.0.1", catcher.port)) for _ in range(idle)]
            assert catcher.process is not None
            start = time.time() + 0.5
            share = len(frames) // processes
            senders = [
                multiprocessing.Process(
                    target=send,
                    args=(catcher.port, frames[n * share : (n + 1) * share if n < processes - 1 else None],
                          max(1, connections // processes), start),
                )
                for n in range(processes)
            ]  # fmt: skip
            assert server.process is not None
            cpu_before = cpu_seconds(catcher.process.pid), cpu_seconds(server.process.pid)
            for proc in senders:
                proc.start()
            client = redis.Redis(port=server.port)
            wait_until(lambda: client.xlen("logrelay") >= records, timeout=600, what="all records")
            elapsed = time.time() - start
            catcher_cpu = cpu_seconds(catcher.process.pid) - cpu_before[0]
            redis_cpu = cpu_seconds(server.process.pid) - cpu_before[1]
            for proc in senders:
                proc.join()
            seqs = sorted(json.loads(f[b"record"])["bench_seq"] for _, f in read_stream(client))
            assert seqs == list(range(records)), "records missing or doubled"
            rss = peak_rss_mib(catcher.process.pid)
            assert catcher.stop() == 0
        finally:
            for sock in held:
                sock.close()
            catcher.kill()
            server.stop()
    return {
        "records": records,
        "seconds": elapsed,
        "records_per_s": records / elapsed,
        "peak_rss_mib": rss,
        "catcher_cpu_us_per_record": catcher_cpu / records * 1e6,
        "redis_cpu_us_per_record": redis_cpu / records * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--idle", type=int, default=0, help="connections held open and silent during the run")
    parser.add_argument("catcher_args", nargs="*", help="extra arguments for logrelay catch (after --)")
    args = parser.parse_args()
    result = run(args.records, args.connections, args.processes, args.catcher_args, args.idle)
    print(json.dumps(result))
    print(
        f"catcher ingest: {result['records_per_s']:,.0f} records/s "
        f"({args.records:,} records over {args.connections} connections, {args.idle} idle), "
        f"peak RSS {result['peak_rss_mib']:.0f} MiB, CPU per record: "
        f"catcher {result['catcher_cpu_us_per_record']:.2f}, Redis {result['redis_cpu_us_per_record']:.2f} µs"
    )


if __name__ == "__main__":
    main()
