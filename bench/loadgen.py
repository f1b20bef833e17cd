"""Load generator: SocketHandler traffic from separate OS processes to a receiver on 127.0.0.1.

    python -m bench.loadgen --port P --records N --connections C --processes K \\
        [--mode frames|paced|handler] [--rate R]

Prints one JSON line: ``send_start``, ``send_end`` (``time.time()`` values), ``records``,
``connections`` (plus ``achieved_rate`` for ``paced`` and ``unsent`` for ``handler``).

Contract, for orchestrators that import the functions:

* ``send_frames(port, frames, connections, processes, *, start_at=None)`` sends pre-encoded
  frames (``bench.frames.build_frames``) as fast as the receiver reads them.  Each process gets a
  contiguous slice of the frames and ``connections // processes`` (at least 1) connections; it
  sends its slice in chunks of 64 frames per ``sendall``, round-robin over its connections, so
  every connection carries a contiguous, in-order run of ``bench_seq`` values per chunk and an
  increasing subsequence overall.  Every connection is open before the common start time; the
  clock starts at ``start_at`` (default: 0.5 s after the last process has connected, or at once
  if ``start_at`` has already passed by then).  Sockets are shut down for writing, then closed.
* ``send_paced(port, count, rate, connections, processes, *, seed=1)`` sends records at ``rate``
  records/s in total.  Record ``seq`` is due at ``start + seq / rate`` and process ``n`` sends
  seq ``n, n + processes, ...``; the schedule is absolute, so a late slot is caught up rather
  than shifting every later one.  Each process builds its records up front with the real
  ``SocketHandler.makePickle``; when they fall due, their ``created`` and ``msecs`` are set to
  the send time in the pickled bytes (so ``record.created`` is the emit time, for latency) and
  every record due by then goes in one ``sendall`` (what a busy client's socket buffer does),
  on the next connection in turn, at most once per millisecond per process.  Building and
  pickling records at send time cost ~25 µs each, and one send per record more: at 50k
  records/s the senders took the two cores of the machine and even the naive receiver fell
  behind (p50 656 ms).  Its sockets set TCP_NODELAY
  unless ``nodelay=False`` (``--nagle``): with Nagle on, delayed ACKs, not the receiver, set
  the latency.
* ``run_handlers(port, count, processes)`` is the real-client mode: each process logs
  ``count // processes`` records through a stdlib ``logging.handlers.SocketHandler`` as fast as it
  can.  The stock handler silently drops a record whose send fails (1 s socket timeout) or that
  finds it without a socket; ``unsent`` counts those.  Records the kernel accepted on a socket the
  handler then abandoned are not counted: only the receiver's output shows those.

Every record carries an int ``bench_seq``, unique across the run, so the receiver's output can be
checked for exactly-once delivery.  The return value's ``send_start`` is the moment the first
process began sending and ``send_end`` the moment the last one finished (sockets closed).  A
sender process that fails (non-zero exit) or overruns ``timeout`` raises ``SenderError``.

Processes are started with the ``spawn`` method: the orchestrator may have threads (an event loop,
a log reader) that ``fork`` would copy in an arbitrary state, and spawn behaves the same on every
platform.  Targets are therefore module-level functions.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import logging
import logging.handlers
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import queue
import random
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from bench.frames import make_record, record_fields, sample_exc_info
from relay.server import raise_fd_limit

HOST = "127.0.0.1"
_HANDLER = logging.handlers.SocketHandler("unused", 0)  # only for makePickle; never connects
# Open files each sender process asks for: 500 sockets per process (1000 connections over 2)
# pass the common soft limit of 1024; capped at the hard limit.
FD_WANTED = 65536
CHUNK = 64  # frames per sendall in frames mode, as bench.ingest: the sender's per-call cost must not set the rate
PACED_TICK = 0.001  # paced mode: at most one send per process per millisecond
DEFAULT_DELAY = 0.5  # seconds between "everyone is connected" and the common start
CONNECT_TIMEOUT = 10.0  # per connect; a receiver that does not accept in 10 s is broken, not slow
SEND_TIMEOUT = 60.0  # per sendall: a receiver that stops reading fails the run instead of hanging it
DEFAULT_TIMEOUT = 600.0  # whole run, from process start to the last result


class SenderError(RuntimeError):
    """A sender process failed or did not finish in time."""


def _connect(port: int, count: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    try:
        # One at a time: a burst of parallel SYNs would overflow a small listen backlog (the
        # cookbook server's is 5) and stall in SYN retransmits for seconds.
        for _ in range(count):
            sock = socket.create_connection((HOST, port), timeout=CONNECT_TIMEOUT)
            sock.settimeout(SEND_TIMEOUT)
            socks.append(sock)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _close(socks: list[socket.socket]) -> None:
    for sock in socks:
        # SHUT_WR first: the receiver sees a clean EOF after the last frame, then close.  An
        # OSError means the peer already reset it; the exactly-once check will tell.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        sock.close()


def _wait_for_start(
    index: int,
    results: multiprocessing.queues.Queue[Any],
    start_value: Synchronized[float],
    go: multiprocessing.synchronize.Event,
) -> float:
    """Report "connected", wait for the common start time, sleep until it; return it."""
    results.put(("ready", index))
    if not go.wait(DEFAULT_TIMEOUT):
        raise SenderError(f"sender {index}: no start signal within {DEFAULT_TIMEOUT} s")
    start = float(start_value.value)
    delay = start - time.time()
    if delay > 0:
        time.sleep(delay)
    return start


# --- process targets (module level, so spawn can import them) -------------------------------------


def _frames_worker(
    index: int,
    results: multiprocessing.queues.Queue[Any],
    start_value: Synchronized[float],
    go: multiprocessing.synchronize.Event,
    port: int,
    frames: list[bytes],
    connections: int,
) -> None:
    raise_fd_limit(FD_WANTED)
    socks = _connect(port, connections)
    try:
        _wait_for_start(index, results, start_value, go)
        began = time.time()
        for chunk_no, offset in enumerate(range(0, len(frames), CHUNK)):
            socks[chunk_no % connections].sendall(b"".join(frames[offset : offset + CHUNK]))
    finally:
        _close(socks)
    results.put(("done", index, began, time.time(), {"records": len(frames)}))


def _paced_worker(
    index: int,
    results: multiprocessing.queues.Queue[Any],
    start_value: Synchronized[float],
    go: multiprocessing.synchronize.Event,
    port: int,
    count: int,
    rate: float,
    connections: int,
    processes: int,
    seed: int,
    nodelay: bool,
) -> None:
    raise_fd_limit(FD_WANTED)
    rng = random.Random(seed * 1_000_003 + index)  # a different but reproducible mix per process
    exc_info = sample_exc_info()
    seqs = range(index, count, processes)
    frames = [_timed_frame(make_record(rng, seq, exc_info)) for seq in seqs]
    socks = _connect(port, connections)
    if nodelay:
        # Small sends: with Nagle on, each waits for the ACK of the previous one, which the
        # receiver delays by up to 40 ms (it never sends data), and that, not the receiver,
        # dominates the latency (measured: p50 11 ms with Nagle, 0.2 ms without).
        for sock in socks:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent = 0
    try:
        start = _wait_for_start(index, results, start_value, go)
        began = time.time()
        while sent < len(frames):
            now = time.time()
            # Every record due by now (an absolute schedule: a late wake-up catches up).
            due = min(len(frames), bisect.bisect_right(seqs, (now - start) * rate))
            if due > sent:
                socks[sent % connections].sendall(b"".join(frame.at(now) for frame in frames[sent:due]))
                sent = due
            else:
                # Until the next record is due, and at least PACED_TICK: one send per tick at most.
                time.sleep(max(PACED_TICK, start + seqs[sent] / rate - time.time()))
    finally:
        _close(socks)
    results.put(("done", index, began, time.time(), {"records": sent}))


class _TimedFrame:
    """A pickled record whose ``created`` and ``msecs`` can be set to the moment it is sent."""

    __slots__ = ("_created", "_data", "_msecs")

    def __init__(self, data: bytes, created: int, msecs: int) -> None:
        self._data = bytearray(data)
        self._created = created
        self._msecs = msecs

    def at(self, when: float) -> bytearray:
        self._data[self._created : self._created + 8] = struct.pack(">d", when)
        self._data[self._msecs : self._msecs + 8] = struct.pack(">d", (when - int(when)) * 1000)
        return self._data


def _timed_frame(record: logging.LogRecord) -> _TimedFrame:
    frame = _HANDLER.makePickle(record)
    # makePickle uses protocol 1: a float is BINFLOAT, "G" and 8 bytes big-endian.
    offsets = [frame.find(b"G" + struct.pack(">d", value)) + 1 for value in (record.created, record.msecs)]
    if 0 in offsets:
        raise SenderError("created or msecs not found in the pickled record")
    return _TimedFrame(frame, *offsets)


def _handler_worker(
    index: int,
    results: multiprocessing.queues.Queue[Any],
    start_value: Synchronized[float],
    go: multiprocessing.synchronize.Event,
    port: int,
    count: int,
) -> None:
    logger = logging.Logger(f"bench.app.{index}", logging.INFO)  # not in the manager: no config leaks in
    handler = logging.handlers.SocketHandler(HOST, port)
    logger.addHandler(handler)
    # The stock handler connects on the first emit; connect now so the clock starts connected.
    handler.createSocket()
    if handler.sock is None:
        raise SenderError(f"handler {index}: could not connect to {HOST}:{port}")
    rng = random.Random(index + 1)
    exc_info = sample_exc_info()
    first = index * count
    unsent = 0
    _wait_for_start(index, results, start_value, go)
    began = time.time()
    try:
        for seq in range(first, first + count):
            msg, args, extra, with_exc = record_fields(rng, seq)
            logger.info(msg, *args, extra=extra, exc_info=exc_info if with_exc else None)
            # The stock handler swallows a failed send and drops its socket (and, if reconnecting
            # then fails, drops records until its retry timer expires); no socket after the call
            # means this record was not sent.
            if handler.sock is None:
                unsent += 1
    finally:
        handler.close()
    results.put(("done", index, began, time.time(), {"records": count, "unsent": unsent}))


# --- orchestration ----------------------------------------------------------------------------------


def _run_workers(
    target: Callable[..., None],
    per_worker_args: Sequence[tuple[object, ...]],
    start_at: float | None,
    timeout: float,
) -> tuple[float, float, list[dict[str, Any]]]:
    """Run one spawn process per args tuple; start them together; return (start, end, reports)."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    start_value = ctx.Value("d", 0.0)
    go = ctx.Event()
    procs = [
        ctx.Process(target=target, args=(n, results, start_value, go, *args), name=f"loadgen-{n}", daemon=True)
        for n, args in enumerate(per_worker_args)
    ]
    deadline = time.monotonic() + timeout
    ready: set[int] = set()
    done: dict[int, tuple[float, float, dict[str, Any]]] = {}
    try:
        for proc in procs:
            proc.start()
        # Bounded by the deadline; each pass waits at most 0.1 s for a message, then checks for
        # dead senders so a crash is reported at once instead of at the timeout.
        while len(done) < len(procs):
            if time.monotonic() > deadline:
                raise SenderError(f"senders did not finish within {timeout} s ({len(done)}/{len(procs)} done)")
            try:
                message = results.get(timeout=0.1)
            except queue.Empty:
                for proc in procs:
                    if proc.exitcode not in (None, 0):
                        raise SenderError(f"sender process {proc.name} exited with code {proc.exitcode}") from None
                continue
            if message[0] == "ready":
                ready.add(message[1])
                if len(ready) == len(procs):
                    # Everyone is connected: only now fix the start time, so connecting 1000
                    # sockets never eats into the measured window.
                    now = time.time()
                    start_value.value = max(start_at, now) if start_at is not None else now + DEFAULT_DELAY
                    go.set()
            else:
                _, index, began, ended, extra = message
                done[index] = (began, ended, extra)
        for proc in procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.exitcode != 0:
                raise SenderError(f"sender process {proc.name} exited with code {proc.exitcode}")
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        results.close()
    begins = [began for began, _, _ in done.values()]
    ends = [ended for _, ended, _ in done.values()]
    return min(begins), max(ends), [extra for _, _, extra in done.values()]


def _split(items: list[bytes], parts: int) -> list[list[bytes]]:
    share = len(items) // parts
    return [items[n * share : (n + 1) * share if n < parts - 1 else None] for n in range(parts)]


def send_frames(
    port: int,
    frames: list[bytes],
    connections: int,
    processes: int,
    *,
    start_at: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Send pre-encoded frames from ``processes`` processes over ``connections`` connections in total."""
    if processes < 1:
        raise ValueError("processes must be at least 1")
    per_process = max(1, connections // processes)
    args = [(port, part, per_process) for part in _split(frames, processes)]
    began, ended, _ = _run_workers(_frames_worker, args, start_at, timeout)
    return {"send_start": began, "send_end": ended, "records": len(frames), "connections": per_process * processes}


def send_paced(
    port: int,
    count: int,
    rate: float,
    connections: int,
    processes: int,
    *,
    seed: int = 1,
    nodelay: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Send ``count`` records built at send time, ``rate`` records/s in total, on an absolute schedule.

    ``nodelay=False`` keeps Nagle's algorithm on, as a stock ``SocketHandler`` does.
    """
    if processes < 1 or rate <= 0:
        raise ValueError("processes must be at least 1 and rate positive")
    per_process = max(1, connections // processes)
    args = [(port, count, rate, per_process, processes, seed, nodelay) for _ in range(processes)]
    # The schedule alone takes count / rate seconds; the timeout is on top of that.
    began, ended, reports = _run_workers(_paced_worker, args, None, timeout + count / rate)
    sent = sum(report["records"] for report in reports)
    return {
        "send_start": began,
        "send_end": ended,
        "records": sent,
        "connections": per_process * processes,
        "achieved_rate": sent / (ended - began) if ended > began else float("nan"),
    }


def run_handlers(port: int, count: int, processes: int, *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Log ``count // processes`` records per process through a stock ``SocketHandler``."""
    if processes < 1:
        raise ValueError("processes must be at least 1")
    share = count // processes
    args = [(port, share) for _ in range(processes)]
    began, ended, reports = _run_workers(_handler_worker, args, None, timeout)
    return {
        "send_start": began,
        "send_end": ended,
        "records": share * processes,
        "connections": processes,  # one socket per SocketHandler
        "unsent": sum(report["unsent"] for report in reports),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=64, help="in total; ignored in handler mode (1 each)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--mode", choices=["frames", "paced", "handler"], default="frames")
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s in total (paced mode)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--nagle", action="store_true", help="paced mode: keep Nagle on (as a stock SocketHandler); default TCP_NODELAY"
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds for the whole run")
    args = parser.parse_args(argv)
    if args.mode == "frames":
        from bench.frames import build_frames  # only this mode needs it; keeps spawn children lean

        frames = build_frames(args.records, seed=args.seed)
        result = send_frames(args.port, frames, args.connections, args.processes, timeout=args.timeout)
    elif args.mode == "paced":
        result = send_paced(
            args.port,
            args.records,
            args.rate,
            args.connections,
            args.processes,
            seed=args.seed,
            nodelay=not args.nagle,
            timeout=args.timeout,
        )
    else:
        result = run_handlers(args.port, args.records, args.processes, timeout=args.timeout)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
