"""One client connection: :class:`CatcherProtocol`.

The per-connection state machine: an optional PROXY protocol header, then
frames through a stream decoder into the publisher: SocketHandler frames
(:class:`relay.decode.frames.FrameDecoder`, the default) or syslog messages
(:class:`relay.decode.syslog_frames.SyslogStreamDecoder`).  Who may connect
(the PROXY header, ``--allow``) is :class:`relay.net.admission.Admission`'s.
What all connections share (the connection limits, the
publisher's flow control, the read buffer, the partial-frame budget) is in
:class:`relay.net.registry.ConnectionRegistry`.  No sockets here beyond the
transport it is handed (:class:`relay.net.listener.SocketReader`, or
asyncio's for TLS), so tests drive it with a fake transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

from relay.decode.frames import BadFrame, DecodeLimits, FrameDecoder, FrameTooLarge, Record
from relay.net.admission import Admission, format_peer
from relay.net.proxy_header import ProxyHeaderParser
from relay.net.registry import READ_SIZE, ConnectionRegistry
from relay.publish.publisher import StreamPublisher
from relay.settings import CatcherSettings

__all__ = ["CatcherProtocol", "StreamDecoder", "format_peer"]

log = logging.getLogger("logrelay.catcher")


class StreamDecoder(Protocol):
    """What a connection needs of its decoder (:class:`FrameDecoder` is one)."""

    bad_frames_fed: int

    @property
    def pending_bytes(self) -> int: ...

    @property
    def frame_bytes(self) -> int: ...

    def feed(self, data: bytes | memoryview) -> list[Record | BadFrame]: ...

    def finish(self) -> list[Record | BadFrame]: ...


class CatcherProtocol(Admission, asyncio.BufferedProtocol):
    """One client connection speaking the SocketHandler wire format, or what ``new_decoder`` decodes.

    ``scheme`` names the input in the records' ``client``
    (``syslog+tcp://HOST:PORT``); empty for SocketHandler, whose records
    keep plain ``HOST:PORT``.

    Reads go into the registry's shared buffer, ``READ_SIZE`` at a time
    (``get_buffer``/``buffer_updated``); :meth:`data_received` takes the bytes.
    """

    # One per connection, 10,000 idle ones included: no __dict__ each.
    __slots__ = (
        "_bad_frames",
        "_budget_waiting",
        "_client",
        "_decoder",
        "_header_deadline",
        "_new_decoder",
        "_paused",
        "_peer",
        "_proxy_parser",
        "_publisher",
        "_registry",
        "_scheme",
        "_settings",
        "_stats",
        "_transport",
        "budget_charge",
        "frame_started",
        "host",
        "last_active",
    )

    def __init__(
        self,
        settings: CatcherSettings,
        registry: ConnectionRegistry,
        publisher: StreamPublisher,
        *,
        new_decoder: Callable[[DecodeLimits], StreamDecoder] = FrameDecoder,
        scheme: str = "",
    ) -> None:
        self._settings = settings
        self._new_decoder = new_decoder
        self._scheme = scheme
        self._registry = registry
        self._publisher = publisher
        self._stats = registry.stats
        # Made on the first bytes: an idle connection (10,000 of them, say)
        # holds no decoder, no buffer and no formatted address.
        self._decoder: StreamDecoder | None = None
        self._transport: asyncio.Transport | None = None
        self._paused = False  # by the registry (the publisher's backpressure)
        self._budget_waiting = False  # for room in the partial-frame budget
        self.budget_charge = 0  # what the partial-frame budget counts for us
        self._peer: Any = None  # the transport's own peername object
        self._client: str | None = None
        self.host = ""  # the client's address without port: the per-client limit counts by it
        self.last_active = time.monotonic()
        # When the frame being received started arriving; None on a frame boundary.
        self.frame_started: float | None = None
        self._bad_frames = 0
        self._proxy_parser: ProxyHeaderParser | None = None
        self._header_deadline: asyncio.TimerHandle | None = None

    # -- asyncio callbacks ----------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        buffer = self._registry.read_buffer
        budget = self._registry.partial_frames
        if budget.limit - budget.reserved - budget.waiting_held >= READ_SIZE:
            return buffer  # room for a whole read: the usual case, checked inline
        held = self._decoder.pending_bytes if self._decoder is not None else 0
        return buffer[: budget.read_size(self, held, READ_SIZE)]

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._registry.read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        """Bytes from the client: a PROXY header first if expected, then frames into the publisher."""
        self.last_active = time.monotonic()
        if self._proxy_parser is not None:
            data = self._proxy_header(data)
            if not data:
                return
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = self._new_decoder(self._settings.limits)
        try:
            events = decoder.feed(data)
        except FrameTooLarge as exc:
            self._stats.oversize_frames += 1
            log.warning("closing connection from %s: %s (max-skip-bytes)", self.client, exc)
            self.abort()
            events = exc.events  # complete frames before the bad header still count
        held = decoder.pending_bytes
        if held:
            if self.frame_started is None or events:
                self.frame_started = self.last_active
        else:
            self.frame_started = None
        if held or self.budget_charge:
            budget = self._registry.partial_frames
            budget.settle(self, held, decoder.frame_bytes if held else 0)
            self._stats.partial_bytes = budget.total
            self._stats.partial_frame_waits = budget.waits
        if events:
            self._publish(decoder, events)

    def _publish(self, decoder: StreamDecoder, events: list[Record | BadFrame]) -> None:
        received = f"{time.time():.6f}"
        if decoder.bad_frames_fed:
            # Dead letters go to their own stream: their order relative to
            # records is not kept anywhere, only the records' own order is.
            for frame in events:
                if type(frame) is BadFrame:
                    self._bad_frame(frame.raw, frame.reason, received)
            events = [event for event in events if type(event) is not BadFrame]
        self._publisher.add_records(cast(list[Record], events), self.client, received)

    def eof_received(self) -> bool | None:
        self._finish()
        return None  # close our side too

    def _finish(self) -> None:
        """The peer is done sending: what its last bytes complete (a syslog message without its LF)."""
        decoder = self._decoder
        if decoder is not None and decoder.pending_bytes and self._proxy_parser is None:
            events = decoder.finish()
            if events:
                self._publish(decoder, events)

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        self._registry.partial_frames.release(self)
        self._registry.partial_frames_released()
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        pending = self._decoder.pending_bytes if self._decoder is not None else 0
        # The protocol and its transport refer to each other: only the cycle
        # collector would free them, and with them a partial frame of up to
        # max-frame-bytes, whenever it next runs (an idle catcher kept 300
        # dropped 1 MiB frames for good).  The buffer goes now.
        self._decoder = None
        if pending:
            self._stats.partial_frames_dropped += 1
            log.info("connection from %s closed inside a frame: %d bytes dropped", self.client, pending)
        if self._bad_frames > 1:
            log.warning("connection from %s sent %d undecodable frames in all", self.client, self._bad_frames)

    # -- used by the registry and the server ----------------------------------

    @property
    def at_frame_boundary(self) -> bool:
        return self._decoder is None or self._decoder.pending_bytes == 0

    def pause(self) -> None:
        """Stop reading for the publisher's sake (the registry's flow control)."""
        if not self._paused and self._transport is not None and not self._transport.is_closing():
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self._transport is not None and not self._transport.is_closing():
            self._paused = False
            if not self._budget_waiting:
                self._read_again()

    def budget_wait(self) -> None:
        """No room for our frame in the partial-frame budget: stop reading until there is."""
        self._budget_waiting = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def budget_go_on(self) -> None:
        """Our frame is reserved: read on, unless the publisher holds us too."""
        self._budget_waiting = False
        if not self._paused and self._transport is not None and not self._transport.is_closing():
            self._read_again()

    def _read_again(self) -> None:
        assert self._transport is not None
        # Time spent paused by us does not count against the client.
        self.last_active = time.monotonic()
        if self.frame_started is not None:
            self.frame_started = self.last_active
        self._transport.resume_reading()

    @property
    def paused(self) -> bool:
        """Whether we stopped reading it (the publisher, or the partial-frame budget): not the client's delay."""
        return self._paused or self._budget_waiting

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def ask_to_leave(self) -> None:
        """Half-close: send FIN but keep reading.

        A client that watches for it (``relay.handlers.ReliableSocketHandler``)
        finishes the frame in hand, closes its side and reconnects elsewhere;
        we read everything it sent until its FIN, so nothing is lost.  The
        stock SocketHandler ignores it.
        """
        transport = self._transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            with contextlib.suppress(OSError):
                transport.write_eof()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _bad_frame(self, raw: bytes, reason: str, received: str) -> None:
        self._bad_frames += 1
        self._stats.bad_frames += 1
        self._publisher.add_dead_letter(raw, reason, self.client, received)
        # The first per connection is a warning; a flood is summarised at close.
        level = logging.WARNING if self._bad_frames == 1 else logging.DEBUG
        log.log(
            level,
            "undecodable frame from %s (%d bytes) sent to dead letters: %s",
            self.client,
            len(raw),
            reason,
        )
