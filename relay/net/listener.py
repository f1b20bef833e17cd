"""Plain TCP listening for the catcher: accepted sockets read straight into the protocol, in half the memory.

asyncio's own server gives every connection a ``_SelectorSocketTransport``
(an instance dict, an ``extra`` dict with the peer and local addresses, a
weak reference in the loop's table, a write buffer): ~2.1 KiB each, most of
an idle catcher's memory at 10,000 connections.  A catcher never writes to
its clients, so :class:`SocketReader` is the read half only, with
``__slots__``: the socket, its selector registration and the protocol.
Half the catcher's RSS per idle connection (``python -m bench.idle_connections``
measures it).  TLS listeners keep asyncio's server and
transports (the handshake and record layer are theirs).

:class:`SocketReader` is the part of :class:`asyncio.Transport` that
:class:`relay.net.protocol.CatcherProtocol` uses, with asyncio's semantics:
``get_buffer``/``buffer_updated`` per read, ``eof_received`` then close,
``connection_lost`` called soon after close or abort (once), nothing read
while paused (the socket leaves the selector lazily: see
:meth:`SocketReader.pause_reading`), an error while reading closing the
connection with that error.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["Listener", "SocketReader"]

log = logging.getLogger("logrelay.catcher")

# Errors of accept() that mean "out of descriptors or memory": accepting
# stops for a while instead of spinning on a listening socket that stays
# readable (what asyncio's server does too).
ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_PAUSE_SECONDS = 1.0
# Connections taken per wake-up of a listening socket: others get a turn.
ACCEPTS_PER_WAKEUP = 128


class SocketReader(asyncio.Transport):
    """The read half of a transport for one accepted TCP socket (see the module docstring).

    The protocol must be an :class:`asyncio.BufferedProtocol`.  Writing is
    not supported beyond :meth:`write_eof`.
    """

    __slots__ = ("_closing", "_loop", "_peer", "_protocol", "_reading", "_registered", "_sock")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.BufferedProtocol, peer: Any
    ) -> None:
        # asyncio.BaseTransport.__init__ would give us an extra dict: not called.
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._peer = peer
        self._closing = False
        self._reading = False  # whether the protocol wants bytes
        self._registered = False  # whether the selector watches the socket (see pause_reading)

    def start(self) -> None:
        """Hand the connection to its protocol, then read, unless ``connection_made`` paused or closed it.

        (The catcher's protocol pauses a new connection while the publisher
        is full: resuming here would read past that backpressure.)
        """
        self._reading = True
        self._protocol.connection_made(self)
        if self._reading and not self._closing:
            self._register()

    def _register(self) -> None:
        self._registered = True
        self._loop.add_reader(self._sock.fileno(), self._read_ready)

    def _unregister(self) -> None:
        if self._registered:
            self._registered = False
            self._loop.remove_reader(self._sock.fileno())

    # -- reading ----------------------------------------------------------------

    def _read_ready(self) -> None:
        if not self._reading:
            # Paused since the last read, and bytes wait: only now leave the
            # selector (see pause_reading).  Nothing is read.
            self._unregister()
            return
        protocol = self._protocol
        try:
            buffer = protocol.get_buffer(-1)
            received = self._sock.recv_into(buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # reset by the peer, and the like: the connection is gone
            self._force_close(exc)
            return
        except BaseException as exc:
            self._fatal_protocol_error(exc, "get_buffer")
            return
        try:
            if received:
                protocol.buffer_updated(received)
            elif not protocol.eof_received():
                self.close()
            else:
                self.pause_reading()  # half-closed: nothing more will come
        except BaseException as exc:
            self._fatal_protocol_error(exc, "buffer_updated" if received else "eof_received")

    def _fatal_protocol_error(self, exc: BaseException, call: str) -> None:
        log.error("closing a connection: protocol.%s() failed", call, exc_info=exc)
        self._force_close(exc if isinstance(exc, Exception) else None)
        if not isinstance(exc, Exception):
            raise exc  # KeyboardInterrupt, SystemExit: not ours to swallow

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        """Read nothing more until resumed.

        Lazily: the socket leaves the selector only once it turns readable
        while paused (``_read_ready``).  The catcher pauses and resumes every
        connection at once when the publisher's buffer fills and drains; an
        idle connection then costs a flag, not two ``epoll_ctl`` calls and a
        new handle: with thousands of idle connections beside the busy ones,
        that was about half the catcher's CPU per record (``python -m
        bench.ingest --idle 5000``); with every connection busy it changes
        nothing.
        """
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            if not self._registered:
                self._register()

    # -- closing ----------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading; the protocol's ``connection_lost(None)`` follows soon, then the socket closes."""
        self._force_close(None)

    def abort(self) -> None:
        self._force_close(None)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._closing:
            return
        self._reading = False
        self._unregister()
        self._closing = True
        self._loop.call_soon(self._connection_lost, exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc if isinstance(exc, Exception) else None)
        finally:
            self._sock.close()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Tell the client we are done (a FIN), keeping our side open to read what it still sends."""
        if not self._closing:
            self._sock.shutdown(socket.SHUT_WR)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer
        if name == "socket":
            return self._sock
        if name == "sockname":
            return self._sock.getsockname()
        return default

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        raise NotImplementedError("a SocketReader keeps its protocol")

    def write(self, data: Any) -> None:
        raise NotImplementedError("a SocketReader does not write")

    def get_write_buffer_size(self) -> int:
        return 0


class Listener:
    """Plain TCP listening sockets: each accepted connection goes to ``protocol_factory()`` over a SocketReader.

    :meth:`open` binds (every address ``host`` resolves to, as asyncio's
    server does) and starts accepting; :meth:`close` stops accepting and
    closes the listening sockets, leaving open connections to their
    protocols.
    """

    def __init__(self, protocol_factory: Callable[[], asyncio.BufferedProtocol], *, backlog: int = 1024) -> None:
        self._factory = protocol_factory
        self._backlog = backlog
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sockets: list[socket.socket] = []

    async def open(self, host: str | None, port: int) -> None:
        loop = self._loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host or None, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self.sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    # One socket per family, as asyncio binds them: no dual-stack surprises.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(address)
                except OSError as exc:
                    message = f"error while attempting to bind on address {address!r}: {exc.strerror}"
                    raise OSError(exc.errno, message) from None
                sock.listen(self._backlog)
                sock.setblocking(False)
        except BaseException:
            self.close()
            raise
        for sock in self.sockets:
            loop.add_reader(sock.fileno(), self._accept_ready, sock)

    def _accept_ready(self, listening: socket.socket) -> None:
        assert self._loop is not None
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, peer = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in ACCEPT_RESOURCE_ERRORS:
                    raise
                log.error(
                    "cannot accept connections (%s); trying again in %gs",
                    exc.strerror or exc,
                    ACCEPT_PAUSE_SECONDS,
                )
                self._loop.remove_reader(listening.fileno())
                self._loop.call_later(ACCEPT_PAUSE_SECONDS, self._resume_accepting, listening)
                return
            sock.setblocking(False)
            try:
                SocketReader(self._loop, sock, self._factory(), peer).start()
            except Exception:
                log.exception("closing a connection: setting it up failed")
                sock.close()

    def _resume_accepting(self, listening: socket.socket) -> None:
        if self._loop is not None and listening in self.sockets:
            self._loop.add_reader(listening.fileno(), self._accept_ready, listening)

    def close(self) -> None:
        """Stop accepting; connections already accepted stay with their protocols."""
        sockets, self.sockets = self.sockets, []
        for sock in sockets:
            if self._loop is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
            sock.close()
