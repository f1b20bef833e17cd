"""The catcher's listeners beside SocketHandler's: :class:`CatcherInputs`.

- ``--listen-syslog``: TCP (TLS with the catcher's TLS options) through
  :class:`~relay.net.protocol.CatcherProtocol` with a
  :class:`~relay.decode.syslog_frames.SyslogStreamDecoder`, so syslog
  connections get the same limits, PROXY header, allow-list and flow
  control as SocketHandler's; and UDP on the same port
  (:class:`~relay.net.datagrams.DatagramInput`).
- ``--listen-datagram``: ``DatagramHandler``'s UDP.
- ``--listen-http``: :class:`~relay.net.http_protocol.HttpProtocol`.

Every input feeds the one publisher.  Records name their input in
``client``: ``syslog+tcp://``, ``syslog+tls://``, ``syslog+udp://``,
``datagram://``, ``http://``, ``https://`` (SocketHandler's stay ``HOST:PORT``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, Final, cast

from relay.common.addresses import ListenAddress
from relay.common.signals import StartError
from relay.decode.syslog_frames import SyslogStreamDecoder
from relay.decode.syslog_message import syslog_record
from relay.net.datagrams import DatagramDecoder, DatagramInput, pickle_datagram
from relay.net.http_protocol import HttpProtocol
from relay.net.listener import Listener
from relay.net.protocol import CatcherProtocol
from relay.net.registry import ConnectionRegistry
from relay.publish.publisher import StreamPublisher
from relay.settings import CatcherSettings, TLSSettings

__all__ = ["INPUT_LABELS", "LISTEN_BACKLOG", "CatcherInputs", "listen_stream"]

# Connections the kernel queues before we accept them (bursts of reconnects after a failover).
LISTEN_BACKLOG: Final = 1024
#: How the start line names each input.
INPUT_LABELS: Final = {"syslog": "syslog (UDP, TCP)", "datagram": "DatagramHandler (UDP)", "http": "HTTP"}


async def listen_stream(
    address: ListenAddress,
    new_protocol: Callable[[], asyncio.BaseProtocol],
    tls: TLSSettings | None,
    *,
    writes: bool = False,
) -> Any:
    """A TCP listener for ``new_protocol`` on ``address``; TLS with ``tls``.

    A protocol that never ``writes`` to its clients gets the read-only
    transport of :mod:`relay.net.listener` (plain TCP), about half the memory
    per connection; TLS, and a protocol that answers, get asyncio's.
    """
    if tls or writes:
        return await asyncio.get_running_loop().create_server(
            new_protocol,
            address.host,
            address.port,
            backlog=LISTEN_BACKLOG,
            reuse_address=True,
            ssl=tls.context() if tls else None,
        )
    listener = Listener(cast(Callable[[], asyncio.BufferedProtocol], new_protocol), backlog=LISTEN_BACKLOG)
    await listener.open(address.host, address.port)
    return listener


class CatcherInputs:
    """Opens and closes the other inputs; ``bound`` maps each kind to the address it got."""

    def __init__(self, settings: CatcherSettings, registry: ConnectionRegistry, publisher: StreamPublisher) -> None:
        self.settings = settings
        self.registry = registry
        self.publisher = publisher
        self.bound: dict[str, tuple[str, int]] = {}
        self._servers: list[Any] = []
        self._datagrams: list[DatagramInput] = []

    async def open(self) -> None:
        """Listen on every input the settings name; a refusal (an address in use) is a StartError naming it."""
        settings = self.settings
        inputs = (
            ("--listen-syslog", settings.listen_syslog, self._open_syslog),
            ("--listen-datagram", settings.listen_datagram, self._open_pickle_datagrams),
            ("--listen-http", settings.listen_http, self._open_http),
        )
        for option, address, open_input in inputs:
            if address is None:
                continue
            try:
                await open_input(address)
            except OSError as exc:
                self.close()
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise StartError(f"cannot listen on {address} ({option}): {reason}") from exc

    async def _open_syslog(self, address: ListenAddress) -> None:
        settings = self.settings
        scheme = "syslog+tls" if settings.tls else "syslog+tcp"

        def new_protocol() -> CatcherProtocol:
            return CatcherProtocol(
                settings, self.registry, self.publisher, new_decoder=SyslogStreamDecoder, scheme=scheme
            )

        server = await listen_stream(address, new_protocol, settings.tls)
        self._servers.append(server)
        host, port = server.sockets[0].getsockname()[:2]
        self.bound["syslog"] = (host, port)
        # UDP on the port TCP got (the same one, when it was given as 0).
        self._open_datagrams("syslog", ListenAddress(address.host, port), syslog_record, scheme="syslog+udp")

    async def _open_pickle_datagrams(self, address: ListenAddress) -> None:
        self._open_datagrams("datagram", address, pickle_datagram(self.settings.limits))

    def _open_datagrams(
        self, kind: str, address: ListenAddress, decode: DatagramDecoder, *, scheme: str | None = None
    ) -> None:
        datagrams = DatagramInput(
            address, decode, self.publisher, self.registry.stats, scheme=scheme or kind, allow=self.settings.allow
        )
        datagrams.open()
        self._datagrams.append(datagrams)
        self.registry.readers.append(datagrams)
        if self.registry.reading_paused:
            datagrams.pause()
        self.bound.setdefault(kind, datagrams.bound)

    async def _open_http(self, address: ListenAddress) -> None:
        settings = self.settings
        tls = settings.tls

        def new_protocol() -> HttpProtocol:
            return HttpProtocol(settings, self.registry, self.publisher, tls=tls is not None)

        server = await listen_stream(address, new_protocol, tls, writes=True)  # HTTP answers
        self._servers.append(server)
        self.bound["http"] = server.sockets[0].getsockname()[:2]

    def close(self) -> None:
        """No new connections or datagrams; what the kernel holds for the UDP inputs is read first."""
        for server in self._servers:
            server.close()
        for datagrams in self._datagrams:
            datagrams.drain_and_close()
        self.registry.readers.clear()
