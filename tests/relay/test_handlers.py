"""ReliableSocketHandler against a real receiver on 127.0.0.1: order, outages, overflow, shutdown, wire format.

The receiver below reads the stock wire format (4-byte big-endian length,
pickled dict) from real sockets, can be stopped gracefully (half-close, read
until the client closes, as ``logrelay catch`` does on SIGTERM) or abruptly,
and restarted on the same port.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import logging.handlers
import os
import pickle
import selectors
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.handlers import ReliableSocketHandler
from tests.support.polling import wait_until
from tests.support.realredis import free_port

REPO = Path(__file__).resolve().parents[2]


class Receiver:
    """A SocketHandler receiver: one thread, one selector, frames cut from a per-connection buffer.

    ``messages`` is every received record's ``msg`` in arrival order, kept
    across restarts; ``frames`` the raw frames (length prefix included).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._messages: list[str] = []
        self.frames: list[bytes] = []
        self.partial_frames = 0  # connections that ended inside a frame
        self.forced_closes = 0  # connections closed by a graceful stop's deadline
        self.accepted = 0
        self._thread: threading.Thread | None = None
        self._wake_w: socket.socket | None = None
        self._stop_request: tuple[bool, float] | None = None

    def messages(self) -> list[str]:
        with self._lock:
            return list(self._messages)

    def count(self, prefix: str = "") -> int:
        with self._lock:
            return sum(1 for m in self._messages if m.startswith(prefix))

    def start(self) -> Receiver:
        assert self._thread is None, "already running"
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        wake_r, self._wake_w = socket.socketpair()
        self._stop_request = None
        self._thread = threading.Thread(target=self._serve, args=(listener, wake_r), daemon=True)
        self._thread.start()
        return self

    def stop(self, *, graceful: bool = True, drain_timeout: float = 10.0) -> None:
        """Close the listener; graceful: half-close each connection and read until the client closes."""
        if self._thread is None:
            return
        assert self._wake_w is not None
        self._stop_request = (graceful, drain_timeout)
        self._wake_w.send(b"\0")
        self._thread.join(drain_timeout + 10)
        assert not self._thread.is_alive(), "receiver thread did not stop"
        self._wake_w.close()
        self._thread = self._wake_w = None

    def _serve(self, listener: socket.socket, wake_r: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        conns: dict[socket.socket, bytearray] = {}
        sel.register(listener, selectors.EVENT_READ, "listener")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        deadline: float | None = None
        try:
            while True:
                timeout = None
                if deadline is not None:
                    if not conns:
                        return
                    timeout = deadline - time.monotonic()
                    if timeout <= 0:
                        self.forced_closes += len(conns)
                        return
                for key, _ in sel.select(timeout):
                    if key.data == "listener":
                        conn, _ = listener.accept()
                        conn.setblocking(False)
                        conns[conn] = bytearray()
                        sel.register(conn, selectors.EVENT_READ, "conn")
                        self.accepted += 1
                    elif key.data == "wake":
                        wake_r.recv(16)
                        assert self._stop_request is not None
                        graceful, drain_timeout = self._stop_request
                        sel.unregister(listener)
                        listener.close()
                        if not graceful:
                            return
                        deadline = time.monotonic() + drain_timeout
                        for conn in conns:
                            with contextlib.suppress(OSError):
                                conn.shutdown(socket.SHUT_WR)
                    else:
                        readable = key.fileobj
                        assert isinstance(readable, socket.socket)
                        self._read(sel, conns, readable)
        finally:
            for conn in conns:
                conn.close()
            sel.close()
            listener.close()
            wake_r.close()

    def _read(self, sel: selectors.BaseSelector, conns: dict[socket.socket, bytearray], conn: socket.socket) -> None:
        buf = conns[conn]
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if buf:
                self.partial_frames += 1
            sel.unregister(conn)
            del conns[conn]
            conn.close()
            return
        buf += data
        while len(buf) >= 4:
            (size,) = struct.unpack(">L", buf[:4])
            if len(buf) < 4 + size:
                break
            frame = bytes(buf[: 4 + size])
            del buf[: 4 + size]
            record = pickle.loads(frame[4:])  # trusted: test-only, our own handlers
            with self._lock:
                self.frames.append(frame)
                self._messages.append(record["msg"])


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        receiver.stop(graceful=False)


@pytest.fixture
def receiver_factory(receivers: list[Receiver]) -> Callable[..., Receiver]:
    def make(port: int | None = None, *, started: bool = True) -> Receiver:
        receiver = Receiver(port or free_port())
        receivers.append(receiver)
        return receiver.start() if started else receiver

    return make


@pytest.fixture
def handlers() -> Iterator[list[logging.Handler]]:
    made: list[logging.Handler] = []
    yield made
    for handler in made:
        handler.close()


@pytest.fixture
def make_handler(handlers: list[logging.Handler]) -> Callable[..., ReliableSocketHandler]:
    def make(port: int, **kwargs: Any) -> ReliableSocketHandler:
        kwargs.setdefault("reconnect_max_delay", 0.5)
        kwargs.setdefault("close_timeout", 1.0)
        handler = ReliableSocketHandler("127.0.0.1", port, **kwargs)
        handlers.append(handler)
        return handler

    return make


@pytest.fixture
def make_logger() -> Iterator[Callable[[logging.Handler], logging.Logger]]:
    loggers: list[tuple[logging.Logger, logging.Handler]] = []

    def make(handler: logging.Handler) -> logging.Logger:
        logger = logging.getLogger(f"test.handlers.{uuid.uuid4().hex}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(handler)
        loggers.append((logger, handler))
        return logger

    yield make
    for logger, handler in loggers:
        logger.removeHandler(handler)


def log_all(logger: logging.Logger, messages: list[str]) -> None:
    for message in messages:
        logger.info(message)


# --------------------------------------------------------------------------- order and outages


def test_records_arrive_in_order_from_many_threads(
    receiver_factory: Callable[..., Receiver],
    make_handler: Callable[..., ReliableSocketHandler],
    make_logger: Callable[[logging.Handler], logging.Logger],
) -> None:
    receiver = receiver_factory()
    handler = make_handler(receiver.port)
    logger = make_logger(handler)
    per_thread = {t: [f"t{t}-{i}" for i in range(250)] for t in range(4)}
    threads = [threading.Thread(target=log_all, args=(logger, msgs)) for msgs in per_thread.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert handler.flush(10)
    handler.close()  # the receiver then reads up to our FIN: everything sent
    receiver.stop()

    received = receiver.messages()
    assert sorted(received) == sorted(m for msgs in per_thread.values() for m in msgs)
    for t, msgs in per_thread.items():
        assert [m for m in received if m.startswith(f"t{t}-")] == msgs
    assert (handler.sent, handler.dropped, handler.buffered) == (1000, 0, 0)
    assert handler.sock is None  # the stock send path was never used
    assert receiver.partial_frames == 0


def test_buffers_while_the_receiver_is_down_then_delivers_in_order(
    receiver_factory: Callable[..., Receiver],
    make_handler: Callable[..., ReliableSocketHandler],
    make_logger: Callable[[logging.Handler], logging.Logger],
) -> None:
    receiver = receiver_factory(started=False)
    handler = make_handler(receiver.port)
    logger = make_logger(handler)
    expected = [f"early-{i}" for i in range(500)]
    log_all(logger, expected)
    assert not handler.flush(0.2)  # nothing can be sent yet
    assert (handler.buffered, handler.sent, handler.dropped) == (500, 0, 0)

    receiver.start()
    wait_until(lambda: receiver.count() >= 500, timeout=15, what="the buffered records")
    assert handler.flush(10)
    handler.close()
    receiver.stop()
    assert receiver.messages() == expected
    assert receiver.partial_frames == 0


def restart_mid_stream(
    handler: logging.Handler, logger: logging.Logger, receiver: Receiver, *, drain_timeout: float
) -> tuple[list[str], list[str], list[str]]:
    """Log while the receiver runs, while it is stopped (gracefully), and after it restarts on the same port."""
    before = [f"before-{i}" for i in range(200)]
    during = [f"during-{i}" for i in range(200)]
    log_all(logger, before)
    wait_until(lambda: receiver.count("before-") > 0, what="a first record")
    receiver.stop(graceful=True, drain_timeout=drain_timeout)
    log_all(logger, during)
    receiver.start()
    after_counter = itertools.count()
    after: list[str] = []

    def flowing_again() -> bool:
        # The stock handler drops records until its retry timer lets it reconnect: keep logging.
        after.append(f"after-{next(after_counter)}")
        logger.info(after[-1])
        return receiver.count("after-") > 0

    wait_until(flowing_again, timeout=30, what="records flowing after the restart")
    return before, during, after


def test_receiver_restart_loses_and_doubles_nothing(
    receiver_factory: Callable[..., Receiver],
    make_handler: Callable[..., ReliableSocketHandler],
    make_logger: Callable[[logging.Handler], logging.Logger],
) -> None:
    receiver = receiver_factory()
    handler = make_handler(receiver.port)
    logger = make_logger(handler)
    before, during, after = restart_mid_stream(handler, logger, receiver, drain_timeout=10)
    # It saw the receiver's FIN and closed its side: the drain ended without forcing.
    assert receiver.forced_closes == 0
    assert handler.flush(10)
    handler.close()
    receiver.stop()
    assert receiver.messages() == before + during + after
    assert receiver.partial_frames == 0
    assert handler.dropped == 0


def test_stock_socket_handler_loses_records_in_the_same_restart(
    receiver_factory: Callable[..., Receiver],
    handlers: list[logging.Handler],
    make_logger: Callable[[logging.Handler], logging.Logger],
) -> None:
    """The contrast: the stock handler drops every record logged while the receiver is down."""
    receiver = receiver_factory()
    stock = logging.handlers.SocketHandler("127.0.0.1", receiver.port)
    handlers.append(stock)
    logger = make_logger(stock)
    before, during, after = restart_mid_stream(stock, logger, receiver, drain_timeout=0.5)
    assert receiver.forced_closes == 1  # it ignores the receiver's FIN
    stock.close()
    receiver.stop()
    received = receiver.messages()
    expected = before + during + after
    lost = [m for m in expected if m not in set(received)]
    print(f"stock SocketHandler: {len(lost)} of {len(expected)} records lost across the restart")
    assert not set(during) & set(received)  # nowhere to send them, and no buffer
    assert len(lost) >= len(during)


def test_abrupt_receiver_restart_never_duplicates_or_reorders(
    receiver_factory: Callable[..., Receiver],
    make_handler: Callable[..., ReliableSocketHandler],
    make_logger: Callable[[logging.Handler], logging.Logger],
) -> None:
    """A receiver that closes without draining: frames already in the kernel may be lost, never doubled."""
    receiver = receiver_factory()
    handler = make_handler(receiver.port)
    logger = make_logger(handler)
    expected = [f"r-{i}" for i in range(3000)]
    writer = threading.Thread(target=log_all, args=(logger, expected))
    writer.start()
    wait_until(lambda: receiver.count() >= 300, what="records before the crash")
    receiver.stop(graceful=False)
    receiver.start()
    writer.join()
    assert handler.flush(15)
    handler.close()
    receiver.stop()
    received = receiver.messages()
    assert len(received) == len(set(received))
    assert received == sorted(received, key=lambda m: int(m.split("-")[1]))
    print(f"abrupt restart: {len(expected) - len(received)} of {len(expected)} records lost in kernel buffers")


# --------------------------------------------------------------------------- overflow


def test_full_buffer_drops_the_newest_without_blocking(
    receiver_factory: Callable[..., Receiver],
    make_handler: Callable[..., ReliableSocketHandler],
    make_logger: Callable[[logging.Handler], logging.Logger],
) -> None:
    receiver = receiver_factory(started=False)
    handler = make_handler(receiver.port, buffer_records=100, block_timeout=0.01)
    logger = make_logger(handler)
    per_thread = {t: [f"t{t}-{i}" for i in range(500)] for t in range(4)}
    durations: list[float] = []

    def timed(messages: list[str]) -> None:
        for message in messages:
            start = time.perf_counter()
            logger.info(message)
            durations.append(time.perf_counter() - start)

    threads = [threading.Thread(target=timed, args=(msgs,)) for msgs in per_thread.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"emit with a full buffer: max {max(durations) * 1000:.1f} ms over {len(durations)} calls")
    assert max(durations) < 0.5
    assert (handler.buffered, handler.dropped) == (100, 1900)

    receiver.start()
    assert handler.flush(15)
    handler.close()
    receiver.stop()
    received = receiver.messages()
    assert len(received) == len(set(received)) == 100
    for t, msgs in per_thread.items():
        kept = [m for m in received if m.startswith(f"t{t}-")]
        assert kept == msgs[: len(kept)]  # each thread's oldest records, in order: the newest were dropped


def test_default_block_timeout_bounds_emit(
    make_handler: Callable[..., ReliableSocketHandler],
    make_logger: Callable[[logging.Handler], logging.Logger],
) -> None:
    handler = make_handler(free_port(), buffer_records=10, close_timeout=0.1)
    assert handler.block_timeout == 0.05
    logger = make_logger(handler)
    durations = []
    for i in range(30):
        start = time.perf_counter()
        logger.info("record %d", i)
        durations.append(time.perf_counter() - start)
    assert max(durations) < 0.5
    assert (handler.buffered, handler.dropped) == (10, 20)


def test_byte_bound(make_handler: Callable[..., ReliableSocketHandler]) -> None:
    record = logging.makeLogRecord({"msg": "x" * 1000})
    frame_size = len(ReliableSocketHandler.makePickle(make_handler(free_port()), record))
    handler = make_handler(
        free_port(), buffer_bytes=10 * frame_size + frame_size // 2, block_timeout=0, close_timeout=0.1
    )
    for _ in range(25):
        handler.handle(record)
    assert handler.buffered == 10
    assert handler.buffered_bytes == 10 * frame_size
    assert handler.dropped == 15
    handler.handle(logging.makeLogRecord({"msg": "y" * handler.buffer_bytes}))  # can never fit: dropped at once
    assert handler.dropped == 16


def test_emit_does_not_wait_for_the_handler_lock(
    make_handler: Callable[..., ReliableSocketHandler],
    make_logger: Callable[[logging.Handler], logging.Logger],
) -> None:
    """logging.shutdown holds the handler lock during flush(); other threads must keep logging meanwhile."""
    handler = make_handler(free_port(), close_timeout=0.1)
    logger = make_logger(handler)
    handler.acquire()
    try:
        thread = threading.Thread(target=logger.info, args=("while locked",))
        thread.start()
        thread.join(5)
        assert not thread.is_alive()
    finally:
        handler.release()
    assert handler.buffered == 1


# --------------------------------------------------------------------------- wire format


def test_wire_format_is_the_stock_one(
    receiver_factory: Callable[..., Receiver],
    make_handler: Callable[..., ReliableSocketHandler],
    make_logger: Callable[[logging.Handler], logging.Logger],
) -> None:
    receiver = receiver_factory()
    handler = make_handler(receiver.port)
    logger = make_logger(handler)
    stock = logging.handlers.SocketHandler("127.0.0.1", receiver.port)  # makePickle opens no socket
    captured: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    logger.removeHandler(handler)
    capture = Capture()
    logger.addHandler(capture)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("order %s failed: ünïcödé", 42, extra={"order_id": 42, "tags": ("a", "b")})
    logger.removeHandler(capture)
    (record,) = captured

    expected = stock.makePickle(record)
    stock.close()
    assert handler.makePickle(record) == expected
    handler.handle(record)
    handler.send(expected)  # the stock send() entry point goes through the queue too
    assert handler.flush(10)
    handler.close()
    receiver.stop()
    assert receiver.frames == [expected, expected]
    assert handler.sock is None


# --------------------------------------------------------------------------- shutdown


def test_close_with_the_receiver_down_is_bounded_and_reports_losses(
    make_handler: Callable[..., ReliableSocketHandler],
    make_logger: Callable[[logging.Handler], logging.Logger],
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = make_handler(free_port(), close_timeout=1.0)
    logger = make_logger(handler)
    for i in range(10):
        logger.info("doomed %d", i)
    start = time.monotonic()
    handler.close()
    elapsed = time.monotonic() - start
    assert elapsed < 1.0 + 1.5
    assert (handler.buffered, handler.dropped) == (10, 0)
    assert "closed with 10 record(s) unsent" in capsys.readouterr().err
    handler.close()  # twice is fine
    logger.info("after close")
    assert (handler.buffered, handler.dropped) == (10, 1)


def test_logging_shutdown_waits_one_close_timeout(
    make_handler: Callable[..., ReliableSocketHandler],
    make_logger: Callable[[logging.Handler], logging.Logger],
) -> None:
    """logging.shutdown() calls flush() then close(): with the receiver down, only the first one waits."""
    handler = make_handler(free_port(), close_timeout=2.0)
    logger = make_logger(handler)
    logger.info("doomed")
    start = time.monotonic()
    logging.shutdown([weakref.ref(handler)])
    elapsed = time.monotonic() - start
    assert 1.9 < elapsed < 2.0 + 1.5
    assert handler.buffered == 1


def run_script(script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_interpreter_exit_sends_what_is_buffered(receiver_factory: Callable[..., Receiver]) -> None:
    """No explicit close(): logging.shutdown at exit flushes the buffer, like the stock handler's last sends."""
    receiver = receiver_factory()
    result = run_script(
        f"""
        import logging
        from relay.handlers import ReliableSocketHandler
        logging.getLogger().addHandler(ReliableSocketHandler("127.0.0.1", {receiver.port}))
        for i in range(300):
            logging.getLogger().warning("exit-%d", i)
        """
    )
    assert result.returncode == 0, result.stderr
    wait_until(lambda: receiver.count() >= 300, what="records flushed at exit")
    receiver.stop()
    assert receiver.messages() == [f"exit-{i}" for i in range(300)]


def test_interpreter_exit_with_the_receiver_down_is_bounded() -> None:
    result = run_script(
        f"""
        import logging
        from relay.handlers import ReliableSocketHandler
        logging.getLogger().addHandler(ReliableSocketHandler("127.0.0.1", {free_port()}, close_timeout=1.0))
        logging.getLogger().warning("lost")
        """,
        timeout=1.0 + 20,
    )
    assert result.returncode == 0, result.stderr
    assert "closed with 1 record(s) unsent" in result.stderr


# --------------------------------------------------------------------------- fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_does_not_resend_the_parents_buffer(
    receiver_factory: Callable[..., Receiver],
    make_handler: Callable[..., ReliableSocketHandler],
    make_logger: Callable[[logging.Handler], logging.Logger],
) -> None:
    receiver = receiver_factory(started=False)
    handler = make_handler(receiver.port)
    logger = make_logger(handler)
    log_all(logger, [f"parent-{i}" for i in range(10)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() of a threaded process
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            if handler.buffered == 0:
                log_all(logger, [f"child-{i}" for i in range(5)])
                code = 0 if handler.flush(30) else 2
                handler.close()
        finally:
            os._exit(code)
    receiver.start()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert handler.flush(10)
    handler.close()
    receiver.stop()
    received = receiver.messages()
    assert [m for m in received if m.startswith("parent-")] == [f"parent-{i}" for i in range(10)]
    assert [m for m in received if m.startswith("child-")] == [f"child-{i}" for i in range(5)]


# --------------------------------------------------------------------------- packaging


def test_import_pulls_in_no_dependency() -> None:
    result = run_script(
        """
        import sys
        import relay.handlers
        heavy = {"redis", "click", "orjson", "fakeredis"}
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
        assert not loaded, loaded
        others = sorted(m for m in sys.modules if m.startswith("relay.") and m != "relay.handlers")
        assert not others, others
        """
    )
    assert result.returncode == 0, result.stderr
