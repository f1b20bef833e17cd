"""``ReliableSocketHandler``: a drop-in ``logging.handlers.SocketHandler`` that buffers instead of dropping.

Use it exactly like the stock handler::

    handler = ReliableSocketHandler("127.0.0.1", 9020)
    logging.getLogger().addHandler(handler)

It speaks the stock wire format (``SocketHandler.makePickle``: a 4-byte
big-endian length, then the record's attribute dict pickled with protocol 1),
so any receiver of the stock handler — ``logrelay catch`` included — reads it
unchanged.  Standard library only: importing this module imports nothing else
of logrelay and no third-party package, so services can use it without
installing logrelay's dependencies.

How it works
------------
``emit()`` pickles the record in the calling thread (so the record is captured
as it is at the logging call) and appends the frame to a bounded in-memory
queue.  One daemon thread per handler owns the socket: it connects, sends the
frames in order, one ``sendall`` each, and when the connection fails or cannot
be made it reconnects with exponential backoff and jitter (``reconnect_delay``
doubling up to ``reconnect_max_delay``; a connection that delivered at least one
frame is retried at once).  A frame leaves the queue only once ``sendall`` has
returned for it.

Contract
--------
* **Order**: frames are sent in the order ``emit()`` queued them, over one
  connection at a time; records logged by one thread arrive in that thread's
  order.
* **No duplicates**: a frame whose ``sendall`` raised is re-sent whole on the
  next connection.  This cannot duplicate it: ``sendall`` raises only while
  part of the frame (at least its last byte) has not been handed to the
  kernel, so the peer cannot have received the whole frame; a receiver drops
  the partial frame when the connection ends (the stock ``SocketServer``
  recipe, ``logrelay catch``).  A frame whose ``sendall`` returned counts as
  delivered and is never sent again.
* **What outages lose**: nothing while the receiver is unreachable or
  refusing connections, as long as the buffer has room (records are queued and
  sent on reconnection), and nothing when the receiver shuts down gracefully
  by half-closing the connection and reading until our end closes (``logrelay
  catch`` does this on SIGTERM): before each frame, and while idle, the sender
  watches for the peer's FIN, stops sending on that connection and
  reconnects.  What TCP cannot tell us *is* lost: ``sendall`` returning means
  the bytes are in this host's kernel, not that the receiver read them.  If
  the receiver dies, resets the connection or closes it without draining,
  frames already handed to the kernel (at most the two socket buffers' worth)
  are gone, and the protocol has no acknowledgements to notice.  Without acks,
  avoiding that would mean re-sending frames the receiver may already have —
  this handler prefers never duplicating.
* **Bounded blocking**: ``emit()`` never waits for the network.  When the
  buffer is full it waits at most ``block_timeout`` (default 0.05 s) for room.
  ``handle()`` does not take the handler-wide lock (the queue has its own), so
  concurrent logging threads do not queue up behind each other's waits, nor
  behind ``flush()``/``close()`` (which ``logging.shutdown`` calls under that
  lock).
* **Overflow: drop the newest.**  The buffer is bounded by a record count
  (``buffer_records``) and by a byte total (``buffer_bytes``).  A record that
  finds no room within ``block_timeout`` is not queued and is counted in
  ``dropped``; what is already buffered stays, in order, so the receiver sees
  an older contiguous stretch and then a gap, never a reshuffle.  Nothing is
  logged per drop (logging from inside a logging handler that is overflowing
  would make it worse); read ``handler.dropped``, and ``close()`` prints one
  line to stderr if anything was dropped or left unsent.  A frame larger than
  ``buffer_bytes`` is dropped at once.
* **Process death loses the buffer**: it lives in memory only; up to
  ``buffer_records`` records (``handler.buffered`` at that moment) die with the
  process.  ``close()`` (called by ``logging.shutdown`` at interpreter exit)
  waits up to ``close_timeout`` (default 5 s) for the buffer to drain; what is
  still queued afterwards is lost and stays counted in ``buffered``.
  ``logging.shutdown`` calls ``flush()`` and then ``close()``: if that
  ``flush()`` waited its full default timeout without draining and nothing was
  sent since, ``close()`` does not wait again, so exit is delayed by one
  ``close_timeout`` at most.
* **fork()**: a child process starts with an empty buffer (the parent's
  buffered records are the parent's to send) and its own connection and
  thread; the inherited socket is never written by the child.

When to use which
-----------------
Use this handler when records must survive a receiver restart, a rolling
deploy or a short network blip, and when a logging call must never stall on
the network: the stock handler connects and sends inside the logging call
(up to a 1 s connect timeout, and a blocking ``sendall`` when the receiver
stops reading), and drops every record while it waits out its retry delay
(1 s doubling up to 30 s).  The stock handler is enough when losing records
around a restart is acceptable and you want no extra thread per handler.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import logging.handlers
import os
import random
import selectors
import socket
import sys
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["ReliableSocketHandler"]

# Handlers that need a fresh lock, queue and thread in a forked child.
_live_handlers: weakref.WeakSet[ReliableSocketHandler] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for handler in list(_live_handlers):
        handler._reinit_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


class ReliableSocketHandler(logging.handlers.SocketHandler):
    """A ``SocketHandler`` with a bounded buffer and a sender thread; see the module docstring.

    ``host``/``port`` are the stock handler's (``port=None``: ``host`` is a Unix
    socket path).  Keyword-only tuning:

    * ``buffer_records`` (10 000) and ``buffer_bytes`` (16 MiB): the buffer's bounds.
    * ``block_timeout`` (0.05 s): the longest ``emit()`` waits for room.
    * ``connect_timeout`` (2 s): per connection attempt (in the sender thread).
    * ``reconnect_delay`` (0.1 s) doubling up to ``reconnect_max_delay`` (5 s),
      each wait scaled by a random factor in [0.5, 1].
    * ``close_timeout`` (5 s): how long ``close()`` waits for the buffer to drain;
      also ``flush()``'s default timeout.

    Read-only counters: ``dropped`` (records refused: buffer full, too large,
    or emitted after ``close()``), ``sent`` (frames handed to the kernel),
    ``buffered`` / ``buffered_bytes`` (queued, not yet sent) and ``connected``.
    """

    def __init__(
        self,
        host: str,
        port: int | None,
        *,
        buffer_records: int = 10_000,
        buffer_bytes: int = 16 * 1024 * 1024,
        block_timeout: float = 0.05,
        connect_timeout: float = 2.0,
        reconnect_delay: float = 0.1,
        reconnect_max_delay: float = 5.0,
        close_timeout: float = 5.0,
    ) -> None:
        super().__init__(host, port)
        if buffer_records < 1 or buffer_bytes < 1:
            raise ValueError("buffer_records and buffer_bytes must be at least 1")
        if min(block_timeout, close_timeout) < 0 or connect_timeout <= 0:
            raise ValueError("timeouts must not be negative (connect_timeout must be positive)")
        if not 0 < reconnect_delay <= reconnect_max_delay:
            raise ValueError("need 0 < reconnect_delay <= reconnect_max_delay")
        self.buffer_records = buffer_records
        self.buffer_bytes = buffer_bytes
        self.block_timeout = block_timeout
        self.connect_timeout = connect_timeout
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.close_timeout = close_timeout
        self._init_state()
        _live_handlers.add(self)

    def _init_state(self) -> None:
        """Everything the sender thread shares with emitters, guarded by ``_lock``."""
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the sender waits: frames to send, or stop
        self._progress = threading.Condition(self._lock)  # emitters and flush wait: room, frames sent
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued_bytes = 0
        self._appended = 0  # frames ever queued
        self._delivered = 0  # frames ever sent (popped from the queue)
        self._stalled_at: int | None = None  # _delivered when a full-length flush() gave up
        self._dropped = 0
        self._close_started = False
        self._closed = False  # no more emits accepted
        self._stopping = False  # the sender must exit
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None  # the sender's connected socket
        self._idle = False  # the sender sleeps in select() on _sock and the wake-up pair
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None

    # -- counters --------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Records not queued: buffer full for ``block_timeout``, frame too large, or handler closed."""
        with self._lock:
            return self._dropped

    @property
    def buffered(self) -> int:
        """Frames queued and not yet sent (after ``close()``: those that were lost)."""
        with self._lock:
            return len(self._queue)

    @property
    def buffered_bytes(self) -> int:
        with self._lock:
            return self._queued_bytes

    @property
    def sent(self) -> int:
        """Frames whose ``sendall`` returned."""
        with self._lock:
            return self._delivered

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._sock is not None

    # -- logging.Handler API -----------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        """``Handler.handle`` without the handler-wide lock: ``emit`` is thread-safe on its own.

        With the lock, every thread would wait behind the one waiting for
        buffer room, and behind ``logging.shutdown``'s ``flush()``.
        """
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):  # Python 3.12+: a filter may return a replacement
            record = rv
        if rv:
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Pickle ``record`` now, in this thread, and queue the frame; wait at most ``block_timeout``."""
        try:
            frame = self.makePickle(record)
        except Exception:
            self.handleError(record)
            return
        self._enqueue(frame)

    def send(self, s: ReadableBuffer) -> None:
        """Queue an already-made frame (the stock ``send`` wrote to the socket in the caller's thread)."""
        self._enqueue(bytes(s))

    def createSocket(self) -> None:
        """Unused: the sender thread owns the connection (``self.sock`` stays ``None``)."""

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until every frame queued before this call has been sent, at most ``timeout`` seconds.

        ``timeout=None`` means ``close_timeout``.  Returns whether they were all
        sent.  Never waits if the handler is closed or its thread is gone.
        """
        wait = self.close_timeout if timeout is None else timeout
        with self._lock:
            target = self._appended
            done = self._progress.wait_for(lambda: self._delivered >= target or self._stopping, wait)
            drained = self._delivered >= target
            if not done and wait >= self.close_timeout:
                self._stalled_at = self._delivered
            return drained

    def close(self) -> None:
        """Send what is buffered (at most ``close_timeout``), stop the thread, close the socket.

        Safe to call twice, and at interpreter exit.  Frames still queued
        afterwards are lost; ``buffered`` says how many.
        """
        with self._lock:
            first = not self._close_started
            self._close_started = True
            thread = self._thread
            stalled = self._stalled_at is not None and self._stalled_at == self._delivered
        if first:
            if not stalled:
                self.flush(self.close_timeout)
            with self._lock:
                self._closed = True
                self._stopping = True
                self._work.notify_all()
                self._progress.notify_all()
                self._wake_sender()
                if self._queue and self._sock is not None:
                    # Interrupt a sendall the peer is not reading; the frame stays queued (lost).
                    with contextlib.suppress(OSError):
                        self._sock.shutdown(socket.SHUT_RDWR)
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.2, min(1.0, self.close_timeout)))
            self._report_losses()
        super().close()

    # -- the queue -----------------------------------------------------------------

    def _has_room(self, size: int) -> bool:
        return len(self._queue) < self.buffer_records and self._queued_bytes + size <= self.buffer_bytes

    def _enqueue(self, frame: bytes) -> None:
        size = len(frame)
        with self._lock:
            if not self._closed and self._thread is None:
                self._start_sender()
            if self._closed or size > self.buffer_bytes:
                self._dropped += 1
                return
            if not self._has_room(size):
                ok = self._progress.wait_for(lambda: self._closed or self._has_room(size), self.block_timeout)
                if not ok or self._closed:
                    self._dropped += 1
                    return
            self._queue.append(frame)
            self._queued_bytes += size
            self._appended += 1
            if len(self._queue) == 1:  # the sender only waits for work when the queue is empty
                self._work.notify()
                self._wake_sender()

    def _wake_sender(self) -> None:
        """Wake the sender from its idle ``select``; call with ``_lock`` held."""
        if self._idle and self._wake_w is not None:
            self._idle = False
            with contextlib.suppress(OSError):  # full (it is awake anyway) or closing
                self._wake_w.send(b"\0")

    def _start_sender(self) -> None:
        """Start the sender thread; call with ``_lock`` held."""
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        thread = threading.Thread(target=self._run, name=f"ReliableSocketHandler({self._target()})", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # e.g. "can't create new thread at interpreter shutdown"
            self._closed = self._stopping = True
            self._close_sender_resources()
            return
        self._thread = thread

    def _close_sender_resources(self) -> None:
        """Close the wake-up pair and the selector; call with ``_lock`` held, sender gone or exiting."""
        self._idle = False
        for closable in (self._selector, self._wake_r, self._wake_w):
            if closable is not None:
                closable.close()
        self._selector = self._wake_r = self._wake_w = None

    # -- the sender thread ------------------------------------------------------------

    def _run(self) -> None:
        sock: socket.socket | None = None
        failures = 0  # consecutive connections that delivered nothing
        delivered_here = False  # this connection delivered at least one frame
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        return
                    if not self._queue:
                        if sock is None:
                            self._work.wait()
                            continue
                        self._idle = True
                        frame = None
                    else:
                        frame = self._queue[0]
                if frame is None:
                    assert sock is not None
                    if not self._wait_idle(sock):
                        self._disconnect(sock)
                        sock = None
                        failures = 0 if delivered_here else failures + 1
                    continue
                if sock is None:
                    if failures and not self._backoff(failures):
                        return
                    sock = self._connect()
                    if sock is None:
                        failures += 1
                        continue
                    delivered_here = False
                if self._peer_left(sock):
                    self._disconnect(sock)
                    sock = None
                    failures = 0 if delivered_here else failures + 1
                    continue
                try:
                    sock.sendall(frame)
                except OSError:
                    self._disconnect(sock)
                    sock = None
                    failures = 0 if delivered_here else failures + 1
                    continue
                delivered_here = True
                failures = 0
                with self._lock:
                    self._queue.popleft()
                    self._queued_bytes -= len(frame)
                    self._delivered += 1
                    self._progress.notify_all()
        finally:
            if sock is not None:
                self._disconnect(sock)
            with self._lock:
                # If the thread died of a bug, emits must not wait for room that never comes.
                self._closed = self._stopping = True
                self._close_sender_resources()
                self._progress.notify_all()

    def _target(self) -> str:
        return str(self.host) if self.port is None else f"{self.host}:{self.port}"

    def _connect(self) -> socket.socket | None:
        try:
            if self.port is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.connect_timeout)
                    sock.connect(self.host)
                except OSError:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError:
            return None
        sock.settimeout(None)  # sendall blocks while the receiver applies backpressure
        with self._lock:
            if self._stopping or self._selector is None:
                sock.close()
                return None
            self._selector.register(sock, selectors.EVENT_READ)
            self._sock = sock
        return sock

    def _disconnect(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = None
            if self._selector is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(sock)
        sock.close()

    def _backoff(self, failures: int) -> bool:
        """Wait before reconnection attempt number ``failures``; False if asked to stop meanwhile."""
        delay = min(self.reconnect_delay * 2 ** min(failures - 1, 32), self.reconnect_max_delay)
        delay *= random.uniform(0.5, 1.0)
        with self._lock:
            return not self._work.wait_for(lambda: self._stopping, delay)

    def _wait_idle(self, sock: socket.socket) -> bool:
        """Connected with nothing to send: sleep until woken or the peer speaks; False if it left."""
        selector = self._selector
        assert selector is not None
        events = selector.select()
        with self._lock:
            self._idle = False
        return not self._handle_events(sock, events)

    def _peer_left(self, sock: socket.socket) -> bool:
        """Has the receiver closed or half-closed the connection (without blocking)?"""
        selector = self._selector
        assert selector is not None
        return self._handle_events(sock, selector.select(0))

    def _handle_events(self, sock: socket.socket, events: list[tuple[selectors.SelectorKey, int]]) -> bool:
        """Drain the wake-up socket; read what the peer sent; True if it closed its side."""
        left = False
        for key, _ in events:
            if key.fileobj is sock:
                try:
                    left = sock.recv(4096) == b""  # the protocol is one-way: discard any data
                except BlockingIOError:
                    pass
                except OSError:
                    left = True
            elif key.fileobj is self._wake_r and self._wake_r is not None:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
        return left

    # -- shutdown and fork -----------------------------------------------------------------

    def _report_losses(self) -> None:
        with self._lock:
            unsent, dropped = len(self._queue), self._dropped
        if not (unsent or dropped) or sys.stderr is None:
            return
        with contextlib.suppress(Exception):
            sys.stderr.write(
                f"ReliableSocketHandler({self._target()}): closed with {unsent} record(s) unsent; "
                f"{dropped} dropped (buffer full or closed)\n"
            )

    def _reinit_after_fork(self) -> None:
        """In a forked child: forget the parent's queue, socket and thread; start afresh on the next emit."""
        inherited = (self._sock, self._selector, self._wake_r, self._wake_w)
        self._init_state()
        # Closing our copies of the descriptors does not touch the parent's connection.
        for closable in inherited:
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()
