"""Two reference receivers of SocketHandler frames, to compare the catcher with side by side.

    python -m bench.reference {cookbook,naive} --port P --output FILE [--host 127.0.0.1] [--max-seconds S]

Contract: binds, then prints exactly one line ``listening on HOST:PORT`` to stdout (flushed; with
``--port 0`` the port the kernel picked), writes one line per received record to ``--output``
(truncated at start), and serves until SIGTERM or SIGINT (or ``--max-seconds``, a safety net for an
orchestrator that dies without signalling), then flushes the file and exits 0.  Records that are
still in flight when the signal arrives may be lost: signal once the output is complete.

* ``cookbook``: the receiver of the Python Logging Cookbook's "Sending and receiving logging events
  across a network", kept as published (``ThreadingTCPServer``, a thread per connection,
  ``pickle.loads`` + ``logging.makeLogRecord`` + ``logger.handle``) with one fix: its
  ``connection.recv(n)`` may return fewer bytes than asked (the header read then ends the
  connection and the payload loop spins forever at EOF), so both reads go through
  ``_recv_exactly``.  Records go to a ``FileHandler`` with the format
  ``%(bench_seq)s %(asctime)s %(levelname)s %(name)s %(message)s``; the first token is the seq.
* ``naive``: the obvious asyncio catcher: ``readexactly`` the header and the payload, ``pickle.loads``,
  ``json.dumps(record, default=str)`` and a plain buffered ``file.write`` inline, one file for all
  connections.

``check_lines(path, kind)`` returns the ``bench_seq`` values found in an output file, in file order,
so an orchestrator can check exactly-once delivery (``sorted(seqs) == list(range(n))``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import logging.handlers
import pickle
import re
import select
import signal
import socket
import socketserver
import struct
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from relay.server import raise_fd_limit

KINDS = ("cookbook", "naive")
# One descriptor per client: 1000 connections pass the common soft limit of 1024.
FD_WANTED = 65536
FORMAT = "%(bench_seq)s %(asctime)s %(levelname)s %(name)s %(message)s"
_COOKBOOK_LINE = re.compile(r"(-?\d+) \d{4}-\d{2}-\d{2} ")


def _announce(host: str, port: int) -> None:
    print(f"listening on {host}:{port}", flush=True)


# --- cookbook -----------------------------------------------------------------------------------------


def _recv_exactly(conn: socket.socket, n: int) -> bytes | None:
    """``n`` bytes from ``conn``, or None at EOF (the fix: ``recv(n)`` may return fewer)."""
    chunks: list[bytes] = []
    remaining = n
    # Bounded: every pass takes at least one byte off ``remaining`` or returns.
    while remaining > 0:
        chunk = conn.recv(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class LogRecordStreamHandler(socketserver.StreamRequestHandler):
    """Handler for a streaming logging request.

    This basically logs the record using whatever logging policy is configured locally.
    """

    # Method names (unPickle, handleLogRecord) are the cookbook's, so the two can be diffed.
    server: LogRecordSocketReceiver

    def handle(self) -> None:
        """Handle multiple requests - each expected to be a 4-byte length, followed by the LogRecord in pickle format.

        Logs the record according to whatever policy is configured locally.
        """
        while True:
            chunk = _recv_exactly(self.connection, 4)
            if chunk is None:
                break
            slen = struct.unpack(">L", chunk)[0]
            chunk = _recv_exactly(self.connection, slen)
            if chunk is None:
                break
            obj = self.unPickle(chunk)
            record = logging.makeLogRecord(obj)
            self.handleLogRecord(record)

    def unPickle(self, data: bytes) -> Any:
        return pickle.loads(data)

    def handleLogRecord(self, record: logging.LogRecord) -> None:
        # if a name is specified, we use the named logger rather than the one
        # implied by the record.
        name = self.server.logname if self.server.logname is not None else record.name
        logger = logging.getLogger(name)
        # N.B. EVERY record gets logged. This is because Logger.handle
        # is normally called AFTER logger-level filtering. If you want
        # to do filtering, do it at the client end to save wasting
        # cycles and network bandwidth!
        logger.handle(record)


class LogRecordSocketReceiver(socketserver.ThreadingTCPServer):
    """Simple TCP socket-based logging receiver suitable for testing."""

    allow_reuse_address = True
    # A thread per connection, as in the cookbook; daemon threads so a client that never closes
    # cannot keep the process alive after the signal.
    daemon_threads = True

    def __init__(
        self,
        host: str = "localhost",
        port: int = logging.handlers.DEFAULT_TCP_LOGGING_PORT,
        handler: type[socketserver.BaseRequestHandler] = LogRecordStreamHandler,
    ) -> None:
        socketserver.ThreadingTCPServer.__init__(self, (host, port), handler)
        self.abort = 0
        self.timeout = 1
        self.logname: str | None = None

    def serve_until_stopped(self, max_seconds: float) -> None:
        abort = 0
        # Bounded in time by max_seconds; each pass waits at most self.timeout (1 s) for a client.
        deadline = time.monotonic() + max_seconds
        while not abort and time.monotonic() < deadline:
            rd, _wr, _ex = select.select([self.socket.fileno()], [], [], self.timeout)
            if rd:
                self.handle_request()
            abort = self.abort


def serve_cookbook(host: str, port: int, output: Path, max_seconds: float) -> None:
    """Serve the cookbook receiver until SIGTERM/SIGINT, writing records to ``output``."""
    file_handler = logging.FileHandler(output, mode="w", encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(file_handler)
    tcpserver = LogRecordSocketReceiver(host, port)

    def stop(signum: int, frame: FrameType | None) -> None:
        # The serve loop notices within its 1 s select timeout.
        tcpserver.abort = 1

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _announce(host, tcpserver.server_address[1])
    try:
        tcpserver.serve_until_stopped(max_seconds)
    finally:
        tcpserver.server_close()
        # mode="w": a handler thread that emits after close is dropped, not reopened (truncating).
        root.removeHandler(file_handler)
        file_handler.close()


# --- naive --------------------------------------------------------------------------------------------


async def _naive_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    out: TextIO,
    open_conns: dict[asyncio.Task[None], asyncio.StreamWriter],
) -> None:
    task = asyncio.current_task()
    assert task is not None
    open_conns[task] = writer
    try:
        # Ends at EOF (IncompleteReadError); each pass consumes at least 4 bytes of the stream.
        while True:
            header = await reader.readexactly(4)
            (length,) = struct.unpack(">L", header)
            payload = await reader.readexactly(length)
            d = pickle.loads(payload)
            line = json.dumps(d, default=str)
            out.write(line + "\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        # Plain buffered writes, flushed when a client goes: without this the
        # last few KiB would wait for the next client or the shutdown.
        out.flush()
        open_conns.pop(task, None)
        writer.close()


async def _serve_naive(host: str, port: int, out: TextIO, max_seconds: float) -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    open_conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
    server = await asyncio.start_server(lambda r, w: _naive_connection(r, w, out, open_conns), host, port)
    _announce(host, server.sockets[0].getsockname()[1])
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopped.wait(), max_seconds)
    server.close()
    # End the connections still open through EOF rather than cancellation: their complete frames
    # already read are still written, and Python 3.11's stream callback prints a spurious
    # traceback for a cancelled connection task.  Bounded: 5 s, then asyncio.run cancels the rest.
    for writer in list(open_conns.values()):
        writer.transport.abort()
    if open_conns:
        await asyncio.wait(list(open_conns), timeout=5)


def serve_naive(host: str, port: int, output: Path, max_seconds: float) -> None:
    """Serve the naive asyncio receiver until SIGTERM/SIGINT, writing records to ``output``."""
    with open(output, "w", encoding="utf-8") as out:
        asyncio.run(_serve_naive(host, port, out, max_seconds))
        out.flush()


# --- checking -----------------------------------------------------------------------------------------


def check_lines(path: str | Path, kind: str) -> list[int]:
    """The ``bench_seq`` values in a receiver's output file, in file order (blank lines skipped)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    seqs: list[int] = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            if kind == "naive":
                seqs.append(int(json.loads(line)["bench_seq"]))
            else:
                # A cookbook record may span lines (a traceback follows the message); only the
                # line that starts a record begins with "<seq> <asctime date> ".
                match = _COOKBOOK_LINE.match(line)
                if match:
                    seqs.append(int(match.group(1)))
    return seqs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port (printed)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop serving after this long anyway")
    args = parser.parse_args(argv)
    raise_fd_limit(FD_WANTED)
    if args.kind == "cookbook":
        serve_cookbook(args.host, args.port, args.output, args.max_seconds)
    else:
        serve_naive(args.host, args.port, args.output, args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
