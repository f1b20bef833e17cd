"""What stock ``logging.handlers.SocketHandler`` clients lose when the catcher pushes back.

    python -m bench.stock_client_loss [--clients 4] [--rate 500] [--seconds 12] [--stall 6]

Clients log at a steady rate; mid-run, Redis is stalled (SIGSTOP) for
``--stall`` seconds.  Run twice, side by side: once with a catcher buffer
large enough to ride out the stall, once with one that fills, so the catcher
stops reading and TCP pushes back.  The stock handler gives up on a send after
1 s, drops that record and then drops everything until its reconnect timer
(1 s, doubling up to 30 s) lets it try again; the patient variant (no socket
timeout) shows what a client that waits loses: nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tests.support.clients import finish_senders, read_stream, start_senders
from tests.support.processes import CatcherProcess
from tests.support.realredis import RedisServer


def run_case(buffer: str, patient: bool, clients: int, rate: float, seconds: float, stall: float) -> dict[str, object]:
    count = int(rate * seconds)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        # 64 KiB decoded records at most, so a small buffer can be configured.
        catcher = CatcherProcess(
            server.url, ["--buffer-bytes", buffer, "--max-decoded-bytes", "64KiB"], Path(tmp) / "c.log"
        )
        try:
            catcher.start()
            senders = start_senders(catcher.port, clients, count, patient=patient, pad=1024, rate=rate)
            time.sleep((seconds - stall) / 2)  # the load's own schedule, not a wait for a condition
            server.pause()
            time.sleep(stall)
            server.resume()
            reports = finish_senders(senders, timeout=seconds * 10 + 60)
            # A clean exit (0) means everything the catcher accepted was published.
            assert catcher.stop() == 0
            with server.client() as client:
                arrived = len(read_stream(client))
        finally:
            catcher.kill()
            server.stop()
    emitted = clients * count
    return {
        "buffer": buffer,
        "client": "patient" if patient else "stock",
        "emitted": emitted,
        "arrived": arrived,
        "lost": emitted - arrived,
        "lost_pct": round(100 * (emitted - arrived) / emitted, 2),
        "dropped_by_handler": sum(int(r["errors"]) for r in reports),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=2000, help="records/s per client")
    parser.add_argument("--seconds", type=float, default=16)
    parser.add_argument("--stall", type=float, default=10)
    args = parser.parse_args()
    cases = [("256MiB", False), ("1MiB", False), ("1MiB", True)]
    results = [run_case(b, p, args.clients, args.rate, args.seconds, args.stall) for b, p in cases]
    print(
        f"{'buffer':>8} {'client':>8} {'emitted':>8} {'arrived':>8} {'lost':>6} {'lost %':>7}"
        f" {'dropped by handler':>19}"
    )
    for r in results:
        print(
            f"{r['buffer']:>8} {r['client']:>8} {r['emitted']:>8} {r['arrived']:>8} "
            f"{r['lost']:>6} {r['lost_pct']:>7} {r['dropped_by_handler']:>19}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
