"""relay.net.listener: the catcher's plain TCP listener and its read-only transport, over real loopback sockets.

What CatcherProtocol relies on, as asyncio's transports do it: bytes in
order through get_buffer/buffer_updated, EOF then close, connection_lost
exactly once (with the error when the connection broke), reads paused and
resumed, a half-close (FIN) that keeps reading, and a protocol that fails
costing only its own connection.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from relay.net import listener as listener_module
from relay.net.listener import Listener, SocketReader
from tests.support.polling import async_wait_until


class Recorder(asyncio.BufferedProtocol):
    """Records every callback; optionally fails in buffer_updated."""

    def __init__(self, *, fail_on: bytes | None = None, pause_at_start: bool = False) -> None:
        self.transport: SocketReader | None = None
        self.peer: Any = None
        self.data = bytearray()
        self.eof = 0
        self.lost: list[Exception | None] = []
        self.buffer = bytearray(16)  # small: several reads per message
        self.fail_on = fail_on
        self.pause_at_start = pause_at_start

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, SocketReader)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        if self.pause_at_start:
            transport.pause_reading()

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data += self.buffer[:nbytes]
        if self.fail_on is not None and self.fail_on in self.data:
            raise RuntimeError("protocol bug")

    def eof_received(self) -> bool | None:
        self.eof += 1
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


@pytest.fixture
async def serving() -> AsyncIterator[Callable[..., Any]]:
    """A factory: serving(**recorder_options) -> (listener, port, recorders); closes what it opened."""
    opened: list[Listener] = []
    clients: list[socket.socket] = []
    recorders: list[Recorder] = []

    async def start(**options: Any) -> tuple[Listener, int, list[Recorder]]:
        recorders.clear()

        def factory() -> Recorder:
            recorders.append(Recorder(**options))
            return recorders[-1]

        listener = Listener(factory)
        await listener.open("127.0.0.1", 0)
        opened.append(listener)
        return listener, listener.sockets[0].getsockname()[1], recorders

    start.clients = clients  # type: ignore[attr-defined]
    yield start
    for listener in opened:
        listener.close()
    for client in clients:
        client.close()
    # The accepted sockets close once their protocols hear of it.
    for recorder in recorders:
        if recorder.transport is not None:
            recorder.transport.abort()
    await async_wait_until(lambda: all(recorder.lost for recorder in recorders), what="every connection closed")


def connect(serving: Any, port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port))
    serving.clients.append(client)
    return client


async def test_bytes_arrive_in_order_and_eof_closes_once(serving: Any) -> None:
    _, port, recorders = await serving()
    client = connect(serving, port)
    message = bytes(range(256)) * 40  # many reads of 16 bytes
    client.sendall(message)
    client.shutdown(socket.SHUT_WR)

    await async_wait_until(lambda: recorders and recorders[0].lost, what="connection_lost")
    recorder = recorders[0]
    assert bytes(recorder.data) == message
    assert recorder.eof == 1
    assert recorder.lost == [None]
    assert recorder.peer == client.getsockname()
    assert recorder.transport is not None
    assert recorder.transport.is_closing()
    assert recorder.transport.get_extra_info("socket").fileno() == -1  # closed after connection_lost


async def test_paused_reading_leaves_bytes_in_the_kernel_until_resumed(serving: Any) -> None:
    _, port, recorders = await serving(pause_at_start=True)
    client = connect(serving, port)
    await async_wait_until(lambda: recorders, what="the connection")
    transport = recorders[0].transport
    assert transport is not None
    assert not transport.is_reading()
    fd = transport.get_extra_info("socket").fileno()
    client.sendall(b"held back")
    # Not registered with the selector: nothing can be read while paused.
    assert not asyncio.get_running_loop().remove_reader(fd)
    assert recorders[0].data == b""

    transport.resume_reading()
    await async_wait_until(lambda: recorders[0].data == b"held back", what="the bytes after resuming")
    transport.pause_reading()
    transport.pause_reading()  # twice: harmless
    assert not transport.is_reading()


async def test_pausing_a_reading_connection_reads_nothing_and_leaves_the_selector_only_when_bytes_wait(
    serving: Any,
) -> None:
    _, port, recorders = await serving()
    client = connect(serving, port)
    await async_wait_until(lambda: recorders, what="the connection")
    transport = recorders[0].transport
    assert transport is not None
    # Paused and resumed while idle (the publisher's backpressure, on every
    # connection at once): the selector is not touched.
    transport.pause_reading()
    transport.resume_reading()
    assert transport._registered
    assert transport.is_reading()

    transport.pause_reading()
    client.sendall(b"wait for it")
    await async_wait_until(lambda: not transport._registered, what="the paused socket leaving the selector")
    assert recorders[0].data == b""
    transport.resume_reading()
    await async_wait_until(lambda: recorders[0].data == b"wait for it", what="the bytes after resuming")


async def test_a_reset_connection_reports_its_error(serving: Any) -> None:
    _, port, recorders = await serving()
    client = connect(serving, port)
    await async_wait_until(lambda: recorders, what="the connection")
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # RST, not FIN

    await async_wait_until(lambda: recorders[0].lost, what="connection_lost")
    assert len(recorders[0].lost) == 1
    assert isinstance(recorders[0].lost[0], ConnectionResetError)


async def test_a_failing_protocol_costs_its_own_connection_only(serving: Any, caplog: pytest.LogCaptureFixture) -> None:
    _, port, recorders = await serving(fail_on=b"boom")
    bad, good = connect(serving, port), connect(serving, port)
    bad.sendall(b"boom")
    await async_wait_until(lambda: len(recorders) == 2 and recorders[0].lost, what="the failing connection closed")
    assert isinstance(recorders[0].lost[0], RuntimeError)
    assert "protocol.buffer_updated() failed" in caplog.text

    good.sendall(b"fine")
    await async_wait_until(lambda: recorders[1].data == b"fine", what="the other connection still served")
    assert recorders[1].lost == []


async def test_close_and_abort_call_connection_lost_once(serving: Any) -> None:
    _, port, recorders = await serving()
    connect(serving, port), connect(serving, port)
    await async_wait_until(lambda: len(recorders) == 2, what="two connections")
    first, second = (recorder.transport for recorder in recorders)
    assert first is not None
    assert second is not None
    first.close()
    first.abort()
    second.abort()
    second.close()
    await async_wait_until(lambda: all(recorder.lost for recorder in recorders), what="connection_lost")
    assert [recorder.lost for recorder in recorders] == [[None], [None]]


async def test_write_eof_sends_fin_and_keeps_reading(serving: Any) -> None:
    _, port, recorders = await serving()
    client = connect(serving, port)
    await async_wait_until(lambda: recorders, what="the connection")
    transport = recorders[0].transport
    assert transport is not None
    assert transport.can_write_eof()
    transport.write_eof()

    client.setblocking(False)
    assert await asyncio.get_running_loop().sock_recv(client, 10) == b""  # our FIN
    client.sendall(b"the rest of what it had")
    await async_wait_until(lambda: recorders[0].data == b"the rest of what it had", what="bytes after the FIN")
    assert recorders[0].lost == []


async def test_closing_the_listener_refuses_new_connections_and_keeps_open_ones(serving: Any) -> None:
    listener, port, recorders = await serving()
    client = connect(serving, port)
    await async_wait_until(lambda: recorders, what="the connection")
    listener.close()

    with pytest.raises(ConnectionRefusedError):
        connect(serving, port)
    client.sendall(b"still here")
    await async_wait_until(lambda: recorders[0].data == b"still here", what="the open connection served")


async def test_out_of_descriptors_pauses_accepting_then_resumes(
    serving: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener_module, "ACCEPT_PAUSE_SECONDS", 0.05)
    listener, port, recorders = await serving()
    listening = listener.sockets[0]

    class OutOfDescriptorsOnce:
        """The listening socket, whose next accept() fails as with too many open files."""

        def __init__(self) -> None:
            self.failed = False

        def accept(self) -> tuple[socket.socket, Any]:
            if not self.failed:
                self.failed = True
                raise OSError(errno.EMFILE, "Too many open files")
            return listening.accept()

        def fileno(self) -> int:
            return listening.fileno()

    wrapped = OutOfDescriptorsOnce()
    listener.sockets[0] = wrapped  # type: ignore[call-overload]
    loop = asyncio.get_running_loop()
    loop.remove_reader(listening.fileno())
    loop.add_reader(listening.fileno(), listener._accept_ready, wrapped)
    with caplog.at_level(logging.ERROR, logger="logrelay.catcher"):
        connect(serving, port)
        await async_wait_until(lambda: recorders, what="the connection accepted after the pause")
    assert wrapped.failed
    assert "cannot accept connections (Too many open files); trying again in 0.05s" in caplog.text
    listener.sockets[0] = listening


async def test_a_port_in_use_is_one_clear_error(serving: Any) -> None:
    _, port, _ = await serving()
    with pytest.raises(OSError, match=r"error while attempting to bind on address \('127.0.0.1', \d+\)") as raised:
        await Listener(Recorder).open("127.0.0.1", port)
    assert raised.value.errno == errno.EADDRINUSE
