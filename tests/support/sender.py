"""A client application for tests: logs numbered records through a real SocketHandler.

Run as ``python -m tests.support.sender --port P --client NAME --count N``.
It prints one JSON line at exit: ``{"client": ..., "sent": N, "errors": E}``,
where ``errors`` counts the records the stock handler dropped (it does so
silently when a send fails or while it waits to reconnect).  ``--patient`` makes the handler wait as long as
the catcher pushes back instead of giving up after the stock 1 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import socket
import sys
import time

from relay.handlers import ReliableSocketHandler


class CountingSocketHandler(logging.handlers.SocketHandler):
    """The stock handler; it only counts the failures it would otherwise print."""

    def __init__(self, host: str, port: int, *, patient: bool) -> None:
        super().__init__(host, port)
        self.errors = 0
        self.patient = patient
        self.addresses: set[str] = set()  # local ip:port of each connection used

    def makeSocket(self, timeout: float = 1) -> socket.socket:
        return super().makeSocket(timeout=None if self.patient else timeout)  # type: ignore[arg-type]

    def handleError(self, record: logging.LogRecord) -> None:
        self.errors += 1

    def send(self, s: bytes) -> None:
        # The stock send() drops a record silently when it cannot connect (or
        # waits for its retry timer) or when sendall fails; count those too.
        super().send(s)
        if self.sock is None:
            self.errors += 1
        else:
            host, port = self.sock.getsockname()[:2]
            self.addresses.add(f"{host}:{port}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--patient", action="store_true")
    parser.add_argument("--pad", type=int, default=0, help="bytes of padding per record")
    parser.add_argument("--rate", type=float, default=0, help="records per second (0: as fast as possible)")
    parser.add_argument("--reliable", action="store_true", help="use relay.handlers.ReliableSocketHandler")
    args = parser.parse_args()

    handler: logging.Handler
    if args.reliable:
        handler = ReliableSocketHandler(args.host, args.port, close_timeout=30)
    else:
        handler = CountingSocketHandler(args.host, args.port, patient=args.patient)
    logger = logging.getLogger(f"client.{args.client}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    start = time.monotonic()
    for seq in range(args.count):
        if args.rate:
            # Pace against the clock, not by sleeping a fixed time per record,
            # so a blocked send is not made up for by a burst later.
            delay = start + seq / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        extra = {"client_id": args.client, "seq": seq, "pad": "x" * args.pad}
        if seq % 97 == 0:
            try:
                raise ValueError(f"failure number {seq}")
            except ValueError:
                logger.exception("record %d from %s: ünïcödé ✓", seq, args.client, extra=extra)
        else:
            logger.info("record %d from %s", seq, args.client, extra=extra)
    handler.close()
    report: dict[str, object] = {"client": args.client, "sent": args.count}
    if isinstance(handler, ReliableSocketHandler):
        # Dropped on overflow, or still unsent when close() gave up.
        report["errors"] = handler.dropped + handler.buffered
    else:
        assert isinstance(handler, CountingSocketHandler)
        report["errors"] = handler.errors
        report["addresses"] = sorted(handler.addresses)
    print(json.dumps(report))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
