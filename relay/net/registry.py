"""What all the catcher's connections share: :class:`ConnectionRegistry`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Protocol

from relay.common.counters import CatcherStats
from relay.net.partial_frames import PartialFrameBudget

__all__ = ["READ_SIZE", "RELEASE_AFTER_PEAK", "Connection", "ConnectionRegistry", "Pausable"]

# Bytes read from one connection per turn of the event loop.  Each turn reads
# every readable connection once, and the publisher only gets the loop
# between turns: asyncio's 256 KiB reads made one turn 64 x 256 KiB (~25,000
# records, ~130 ms of decoding) under load, starving it.  Smaller reads cost
# more calls per record (16, 32 and 64 KiB compared with python -m bench.ingest).
READ_SIZE = 64 * 1024

# Partial frames that once held this much in all: when the last goes, the
# allocator is asked to give its free memory back (freed large buffers stay
# in its heap otherwise).
RELEASE_AFTER_PEAK = 16 * 1024 * 1024


class Pausable(Protocol):
    """An input the publisher's flow control stops and starts."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class Connection(Protocol):
    """A client connection as the registry and the server see it, whatever it speaks.

    :class:`relay.net.protocol.CatcherProtocol` (SocketHandler) and
    :class:`relay.net.http_protocol.HttpProtocol` are two.
    """

    #: The client's address without port: the per-client limit counts by it (set by :meth:`ConnectionRegistry.rehome`).
    host: str
    #: When it last sent something (monotonic): idle-timeout and draining go by it.
    last_active: float
    #: When the frame or request being received started arriving (monotonic); None between them (frame-timeout).
    frame_started: float | None

    @property
    def client(self) -> str:
        """The sender as logs name it."""
        ...

    @property
    def paused(self) -> bool:
        """Whether we stopped reading it: time paused is not the client's delay."""
        ...

    @property
    def at_frame_boundary(self) -> bool:
        """Whether nothing half-received would be lost by closing it now."""
        ...

    def pause(self) -> None:
        """Stop reading for the publisher's sake."""

    def resume(self) -> None:
        """Read again, unless held for another reason."""

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def ask_to_leave(self) -> None:
        """The catcher is stopping: ask the client to finish what it is sending and go elsewhere."""


class ConnectionRegistry:
    """The open connections, the server-wide reading state, and the connection limits.

    Implements :class:`relay.publish.read_gate.FlowControl`: when the publisher's
    buffer is full, every connection stops reading; new connections start
    paused until it has room again.  Holds the budget of incomplete frames
    all connections share (:class:`relay.net.partial_frames.PartialFrameBudget`).
    """

    def __init__(
        self,
        max_connections: int,
        stats: CatcherStats,
        *,
        max_per_client: int = 0,
        max_partial_bytes: int = 64 * 1024 * 1024,
        release_memory: Callable[[], object] | None = None,
    ) -> None:
        self.connections: set[Connection] = set()
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.stats = stats
        self.reading_paused = False
        self._per_host: Counter[str] = Counter()
        # One read buffer for every connection: the transport fills it and
        # hands it over in one callback (get_buffer, recv_into, buffer_updated), so it
        # is never in use twice; a buffer each would cost 10,000 idle
        # connections 160 MiB.
        self.read_buffer = memoryview(bytearray(READ_SIZE))
        self.partial_frames = PartialFrameBudget(max_partial_bytes)
        self._release_memory = release_memory
        # Inputs without connections (relay.net.datagrams): paused and resumed with the connections.
        self.readers: list[Pausable] = []

    def partial_frames_released(self) -> None:
        """A connection's partial frame is gone: once none is left after a large peak, give the memory back."""
        budget = self.partial_frames
        self.stats.partial_bytes = budget.total
        if budget.total == 0 and budget.high_water >= RELEASE_AFTER_PEAK:
            budget.high_water = 0
            if self._release_memory is not None:
                self._release_memory()

    def add(self, conn: Connection) -> str | None:
        """Register a new connection; return why it is refused, or None."""
        if len(self.connections) >= self.max_connections:
            return f"already {self.max_connections} connections (max-connections)"
        if self.max_per_client and self._per_host[conn.host] >= self.max_per_client:
            return f"already {self.max_per_client} connections from {conn.host} (max-connections-per-client)"
        self.connections.add(conn)
        self._per_host[conn.host] += 1
        self.stats.connections = len(self.connections)
        return None

    def rehome(self, conn: Connection, host: str) -> str | None:
        """Count a connection under its real client (from a PROXY header); return why refused, or None."""
        self._forget_host(conn.host)
        if self.max_per_client and self._per_host[host] >= self.max_per_client:
            conn.host = ""
            return f"already {self.max_per_client} connections from {host} (max-connections-per-client)"
        conn.host = host
        self._per_host[host] += 1
        return None

    def discard(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self._forget_host(conn.host)
        self.stats.connections = len(self.connections)

    def _forget_host(self, host: str) -> None:
        self._per_host[host] -= 1
        if self._per_host[host] <= 0:
            del self._per_host[host]

    def pause_reading(self) -> None:
        self.reading_paused = True
        for conn in self.connections:
            conn.pause()
        for reader in self.readers:
            reader.pause()

    def resume_reading(self) -> None:
        self.reading_paused = False
        for conn in list(self.connections):
            conn.resume()
        for reader in self.readers:
            reader.resume()
