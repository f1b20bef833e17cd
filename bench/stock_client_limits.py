"""What a stock ``logging.handlers.SocketHandler`` loses to the catcher's own limits.

    python -m bench.stock_client_limits [--records 200] [--idle-timeout 2] [--quiet 4]

One stock handler (in this process) sends ``--records`` normal records, then
what the case says, then ``--records`` more, to a real catcher and Redis:

* ``quiet``: stays quiet ``--quiet`` seconds, past an opted-in
  ``--idle-timeout``, and with the default (no idle close);
* ``2 MB``: a 2 MB record between the normal ones, with the default limits
  (1 MiB frames, discarded up to the 64 MiB skip cap), and with
  ``--max-skip-bytes`` equal to ``--max-frame-bytes`` (the catcher closing on
  any oversize frame, as it did before the skip cap);
* ``over skip cap``: a 70 MB record, with the default limits.

The catcher is stopped (SIGTERM: it publishes everything it accepted)
before the stream is read, so what is missing was lost, not late.  Prints a
table and the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from relay.common.stream import StreamKeys
from tests.support.clients import read_stream
from tests.support.processes import CatcherProcess
from tests.support.realredis import RedisServer

Middle = Callable[[logging.handlers.SocketHandler], int]


@dataclass
class Outcome:
    case: str
    catcher: str
    sent: int
    received: int
    lost: int
    big_sent: int
    dead_letters: int
    closed_by_catcher: int


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("bench", logging.INFO, __file__, 1, msg, None, None)


def quiet_for(seconds: float) -> Middle:
    def middle(handler: logging.handlers.SocketHandler) -> int:
        time.sleep(seconds)  # the client's silence is the case itself
        return 0

    return middle


def one_big_record(size: int) -> Middle:
    def middle(handler: logging.handlers.SocketHandler) -> int:
        handler.handle(record("x" * size))
        return 1

    return middle


def run_case(case: str, catcher_args: list[str], records: int, middle: Middle) -> Outcome:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        catcher = CatcherProcess(server.url, catcher_args, Path(tmp) / "catcher.log")
        handler = logging.handlers.SocketHandler("127.0.0.1", catcher.port)
        try:
            catcher.start()
            for n in range(records):
                handler.handle(record(f"before {n}"))
            big = middle(handler)
            for n in range(records):
                handler.handle(record(f"after {n}"))
            handler.close()
            assert catcher.stop() == 0, catcher.log
            stats = catcher.final_stats()
            with server.client() as client:
                received = len(read_stream(client))
                letters = len(read_stream(client, StreamKeys().dead_letters))
        finally:
            handler.close()
            catcher.kill()
            server.stop()
    return Outcome(
        case=case,
        catcher=" ".join(catcher_args) or "defaults",
        sent=2 * records,
        received=received,
        lost=2 * records - received,
        big_sent=big,
        dead_letters=letters,
        closed_by_catcher=stats["connections_idle_closed"] + stats["oversize_frames"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200, help="normal records before and after the case")
    parser.add_argument("--idle-timeout", type=float, default=2.0, help="the opted-in idle timeout (seconds)")
    parser.add_argument("--quiet", type=float, default=4.0, help="the client's silence (seconds)")
    args = parser.parse_args()
    logging.raiseExceptions = False  # a stock handler's failed send is counted here, not printed
    idle = ["--idle-timeout", f"{args.idle_timeout:g}"]
    cases: list[tuple[str, list[str], Middle]] = [
        ("quiet", [], quiet_for(args.quiet)),
        ("quiet", idle, quiet_for(args.quiet)),
        ("2 MB record", [], one_big_record(2_000_000)),
        ("2 MB record", ["--max-skip-bytes", "1MiB"], one_big_record(2_000_000)),
        ("70 MB record (over the skip cap)", [], one_big_record(70_000_000)),
    ]
    results = [run_case(case, catcher_args, args.records, middle) for case, catcher_args, middle in cases]
    print(
        f"{'case':<34} {'catcher':<24} {'sent':>5} {'received':>8} {'lost':>5} {'big sent':>8} "
        f"{'dead letters':>12} {'closed':>6}"
    )
    for r in results:
        print(
            f"{r.case:<34} {r.catcher:<24} {r.sent:>5} {r.received:>8} {r.lost:>5} {r.big_sent:>8} "
            f"{r.dead_letters:>12} {r.closed_by_catcher:>6}"
        )
    print(json.dumps([asdict(r) for r in results]))


if __name__ == "__main__":
    main()
