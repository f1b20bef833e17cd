"""The catcher's UDP inputs: stdlib ``DatagramHandler`` and syslog over UDP.

One message per datagram: :func:`pickle_datagram` for ``DatagramHandler``
(a length-prefixed pickle, the ``SocketHandler`` frame, through the same
safe decoder and limits) and :func:`relay.decode.syslog_message.syslog_record`
for syslog.  :class:`DatagramInput` reads the socket with ``recvfrom`` in
bursts, straight from the event loop's selector, and hands the records to
the publisher in arrival order, so one sender's order is kept.

UDP has no backpressure: while the publisher's buffer is full the socket is
not read, the kernel's receive buffer fills and the kernel drops what does
not fit.  Those drops are not silent: after each burst of reads the
kernel's running count of them (``SO_MEMINFO``'s ``SK_MEMINFO_DROPS``) is
read and exported as ``datagrams_dropped_total``.  (``SO_RXQ_OVFL`` was
not enough: it hands the count with the next datagram, as it stood when that
one was queued, so the drops after the buffer filled went unseen until new
datagrams came.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Final

from relay.common.addresses import IPNetwork, ListenAddress
from relay.common.counters import CatcherStats
from relay.decode.frames import BadFrame, DecodeLimits, Record, decode_payload
from relay.decode.to_json import DecodeLimitExceeded
from relay.decode.unpickler import UnsafePickle
from relay.net.protocol import format_peer
from relay.publish.publisher import StreamPublisher

__all__ = ["DatagramInput", "pickle_datagram"]

log = logging.getLogger("logrelay.catcher")

#: The largest UDP payload (IPv4: 65,535 - 8 - 20).
MAX_DATAGRAM: Final = 65_507
#: Datagrams read per wake-up of the socket: the other inputs and the publisher get the loop between.
DATAGRAMS_PER_WAKEUP: Final = 256
#: Seconds between two warnings of the same kind from one input (a flood is counted, not logged per datagram).
WARN_EVERY: Final = 10.0
#: The receive buffer asked for (the kernel caps it at net.core.rmem_max).
RECEIVE_BUFFER: Final = 8 * 1024 * 1024
# Linux: the socket's memory counters (include/uapi/linux/sock_diag.h), the drops at SK_MEMINFO_DROPS.
SO_MEMINFO: Final = 55
_MEMINFO: Final = struct.Struct("=9I")
_SK_MEMINFO_DROPS: Final = 8
_HEADER: Final = struct.Struct(">I")

#: One datagram's bytes and when it was received → its record, or why it is refused.
DatagramDecoder = Callable[[bytes, float], "Record | BadFrame"]


def pickle_datagram(limits: DecodeLimits) -> DatagramDecoder:
    """The decoder of ``DatagramHandler``'s datagrams: one ``SocketHandler`` frame each."""

    def decode(datagram: bytes, received: float) -> Record | BadFrame:
        if len(datagram) < _HEADER.size:
            return BadFrame(datagram, "datagram shorter than a frame header")
        (size,) = _HEADER.unpack_from(datagram)
        if size != len(datagram) - _HEADER.size:
            return BadFrame(datagram, f"datagram of {len(datagram)} bytes whose frame header says {size}")
        if size > limits.max_frame_bytes:
            return BadFrame(datagram, f"frame of {size} bytes exceeds the limit of {limits.max_frame_bytes} bytes")
        try:
            return decode_payload(datagram[_HEADER.size :], limits)
        except (ValueError, UnsafePickle, DecodeLimitExceeded) as exc:
            return BadFrame(datagram, str(exc))
        except Exception as exc:  # as FrameDecoder: one bad datagram, never a dead input
            return BadFrame(datagram, f"undecodable record: {type(exc).__name__}: {exc}")

    return decode


class DatagramInput:
    """One UDP socket feeding the publisher (see the module docstring).

    ``scheme`` names the input in each record's ``client``
    (``syslog+udp://HOST:PORT``).  Senders outside ``allow`` are dropped and
    counted.  :meth:`pause`/:meth:`resume` are the registry's flow control.
    """

    def __init__(
        self,
        address: ListenAddress,
        decode: DatagramDecoder,
        publisher: StreamPublisher,
        stats: CatcherStats,
        *,
        scheme: str,
        allow: tuple[IPNetwork, ...] = (),
    ) -> None:
        self.address = address
        self._decode = decode
        self._publisher = publisher
        self._stats = stats
        self._scheme = scheme
        self._allow = allow
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._paused = False
        self._kernel_drops = 0
        self._clients: dict[object, str] = {}  # peer → client text, for the senders seen lately
        self._refused: set[str] = set()  # hosts outside --allow already logged
        self._warned: dict[str, float] = {}  # kind of warning → when last logged

    @property
    def bound(self) -> tuple[str, int]:
        assert self._sock is not None
        host, port = self._sock.getsockname()[:2]
        return host, port

    def open(self) -> None:
        """Bind and start reading; ``OSError`` (address in use) propagates."""
        self._loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.address.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind((self.address.host, self.address.port))
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        if not self._paused:
            self._start_reading()

    def drain_and_close(self) -> None:
        """Read what the kernel already holds (unless the buffer is full), then close."""
        if not self._paused and self._sock is not None:
            for _ in range(64):
                before = self._stats.datagrams_received
                self._read_ready()
                if self._stats.datagrams_received == before:
                    break
        self.close()

    def close(self) -> None:
        self._stop_reading()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def pause(self) -> None:
        self._paused = True
        self._stop_reading()

    def resume(self) -> None:
        self._paused = False
        if self._sock is not None:
            self._start_reading()

    def _start_reading(self) -> None:
        if not self._reading and self._loop is not None and self._sock is not None:
            self._loop.add_reader(self._sock.fileno(), self._read_ready)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading and self._loop is not None and self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
        self._reading = False

    def _read_ready(self) -> None:
        sock = self._sock
        if sock is None:
            return
        received = time.time()
        stamp = f"{received:.6f}"
        publisher, decode = self._publisher, self._decode
        run: list[Record] = []
        run_client = ""
        for _ in range(DATAGRAMS_PER_WAKEUP):
            try:
                data, peer = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error reported on the socket: nothing to read for it
                log.debug("UDP input %s: %s", self.address, exc)
                continue
            self._stats.datagrams_received += 1
            client = self._client(peer)
            if client is None:
                continue
            event = decode(data, received)
            if type(event) is BadFrame:
                self._stats.bad_frames += 1
                publisher.add_dead_letter(event.raw, event.reason, client, stamp)
                self._warn(
                    "bad",
                    "undecodable datagram from %s (%d bytes) sent to dead letters: %s",
                    client,
                    len(data),
                    event.reason,
                )
                continue
            if client != run_client and run:
                publisher.add_records(run, run_client, stamp)
                run = []
            run_client = client
            run.append(event)  # type: ignore[arg-type]  # not a BadFrame: checked above
            if self._paused:
                break  # the buffer filled: leave the rest to the kernel
        if run:
            publisher.add_records(run, run_client, stamp)
        self._count_drops(sock)

    def _client(self, peer: object) -> str | None:
        """The ``client`` of a sender's records; None if --allow does not let it send."""
        client = self._clients.get(peer)
        if client is not None:
            return client
        host = str(peer[0]) if isinstance(peer, tuple) else ""
        if self._allow and not _allowed(host, self._allow):
            self._stats.datagrams_not_allowed += 1
            if host not in self._refused and len(self._refused) < 1024:
                self._refused.add(host)
                log.warning("dropping datagrams from %s: its address is not in the allowed networks (--allow)", host)
            return None
        if len(self._clients) >= 4096:
            self._clients.clear()
        client = self._clients[peer] = f"{self._scheme}://{format_peer(peer)}"
        return client

    def _count_drops(self, sock: socket.socket) -> None:
        try:
            total = _MEMINFO.unpack(sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO.size))[_SK_MEMINFO_DROPS]
        except (OSError, struct.error):  # not Linux: drops go uncounted
            return
        if total != self._kernel_drops:
            self._stats.datagrams_dropped += (total - self._kernel_drops) % 2**32
            self._kernel_drops = total
            self._warn(
                "drops",
                "UDP input %s: the kernel dropped datagrams (receive buffer full), %d in all",
                self.address,
                self._stats.datagrams_dropped,
            )

    def _warn(self, kind: str, message: str, *args: object) -> None:
        """A warning, at most one of ``kind`` per WARN_EVERY seconds; the others at debug level."""
        now = time.monotonic()
        loud = now - self._warned.get(kind, -WARN_EVERY) >= WARN_EVERY
        if loud:
            self._warned[kind] = now
        log.log(logging.WARNING if loud else logging.DEBUG, message, *args)


def _allowed(host: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)
