"""Memory of a catcher holding many idle connections while records keep flowing on others.

    python -m bench.idle_connections [--connections 10000]

Starts its own redis-server and catcher, opens N connections that stay
silent, keeps 8 client processes logging through other connections, and
reports the catcher's RSS before and with the connections open, per
connection, after checking that every record arrived exactly once.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

from relay.server import raise_fd_limit
from tests.support.clients import finish_senders, read_stream, rss_bytes, sequences_by_client, start_senders
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess
from tests.support.realredis import RedisServer


def run(connections: int) -> dict[str, float]:
    """Open ``connections`` idle connections on a fresh catcher while 8 clients log; return the figures."""
    raise_fd_limit(connections + 1024)

    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        catcher = CatcherProcess(
            server.url,
            ["--max-connections", str(connections + 100), "--max-connections-per-client", "0"],
            Path(tmp) / "catcher.log",
        )
        held: list[socket.socket] = []
        try:
            catcher.start()
            before = rss_bytes(catcher.pid)
            # Patient clients: opening 10,000 connections keeps the loop busy for a while.
            senders = start_senders(catcher.port, 8, 2000, rate=200, patient=True)
            started = time.monotonic()
            for _ in range(connections):
                held.append(socket.create_connection(("127.0.0.1", catcher.port)))
            opened = time.monotonic() - started
            with_idle = rss_bytes(catcher.pid)
            reports = finish_senders(senders, timeout=300)
            assert all(report["errors"] == 0 for report in reports)
            with server.client() as client:
                wait_until(lambda: client.xlen("logrelay") >= 16_000, timeout=120, what="records")
                seqs = sequences_by_client(read_stream(client))
            assert len(seqs) == 8
            assert all(values == list(range(2000)) for values in seqs.values()), "records missing or doubled"
            peak = rss_bytes(catcher.pid)
        finally:
            for sock in held:
                sock.close()
            catcher.kill()
            server.stop()
    return {
        "idle_connections": connections,
        "rss_before_mib": before / 2**20,
        "rss_with_idle_mib": with_idle / 2**20,
        "rss_after_load_mib": peak / 2**20,
        "kib_per_connection": (with_idle - before) / connections / 1024,
        "seconds_to_open": opened,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=10_000)
    args = parser.parse_args()
    result = run(args.connections)
    before, with_idle, peak = (result[k] * 2**20 for k in ("rss_before_mib", "rss_with_idle_mib", "rss_after_load_mib"))
    print(json.dumps(result))
    print(
        f"{args.connections} idle connections: RSS {before / 2**20:.0f} -> {with_idle / 2**20:.0f} MiB "
        f"({result['kib_per_connection']:.1f} KiB each), {peak / 2**20:.0f} MiB after 16,000 records flowed meanwhile"
    )


if __name__ == "__main__":
    main()
