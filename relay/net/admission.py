"""Who may send, shared by every connection kind: :class:`Admission`.

The PROXY protocol header (``--proxy-protocol``), the ``--allow`` networks and
the per-client limit after a PROXY header, for every connection kind:
:class:`relay.net.protocol.CatcherProtocol` (SocketHandler, syslog over TCP)
and :class:`relay.net.http_protocol.HttpProtocol`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import TYPE_CHECKING, Any, Final, cast

from relay.common.counters import CatcherStats
from relay.net.keepalive import enable_keepalive
from relay.net.proxy_header import ProxyHeaderParser, ProxyProtocolError
from relay.net.registry import Connection, ConnectionRegistry
from relay.settings import CatcherSettings

__all__ = ["PROXY_HEADER_DEADLINE", "Admission", "format_peer"]

log = logging.getLogger("logrelay.catcher")

# With --proxy-protocol, a connection must send its header this soon.
PROXY_HEADER_DEADLINE: Final = 5.0


def format_peer(peer: Any) -> str:
    """``host:port`` for IPv4, ``[host]:port`` for IPv6, the path for Unix sockets."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer or "unknown")


class Admission:
    """A mixin for a connection protocol: the PROXY header, ``--allow``, and refusing a connection.

    The class using it sets these attributes, and :meth:`name_client` says how
    its records name a client (``host:port``, ``http://host:port``).
    """

    __slots__ = ()

    _settings: CatcherSettings
    _registry: ConnectionRegistry
    _stats: CatcherStats
    _client: str | None
    _scheme: str
    _peer: Any
    _transport: asyncio.Transport | None
    _proxy_parser: ProxyHeaderParser | None
    _header_deadline: asyncio.TimerHandle | None
    host: str

    if TYPE_CHECKING:

        def abort(self) -> None: ...

        def pause(self) -> None: ...

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the connection in, or refuse it (limits, --allow); expect its PROXY header if asked to."""
        # A stream transport (uvloop's do not subclass asyncio.Transport).
        self._transport = cast(asyncio.Transport, transport)  # type: ignore[misc]
        peer = self._peer = transport.get_extra_info("peername")
        self.host = str(peer[0]) if isinstance(peer, tuple) else self.client  # type: ignore[misc]
        refusal = self._registry.add(cast(Connection, self))
        if refusal is None and not self._settings.proxy_protocol:
            refusal = self._not_allowed(self.host)
        if refusal is not None:
            self._refuse(refusal)
            return
        self._stats.connections_accepted += 1
        # Nothing closes a quiet connection (--idle-timeout is off by default): a dead peer is found by keepalive.
        enable_keepalive(transport.get_extra_info("socket"))
        if self._registry.reading_paused:
            self.pause()
        if self._settings.proxy_protocol:
            self._proxy_parser = ProxyHeaderParser()  # type: ignore[misc]
            deadline = asyncio.get_running_loop().call_later(PROXY_HEADER_DEADLINE, self._header_too_slow)
            self._header_deadline = deadline  # type: ignore[misc]

    @property
    def client(self) -> str:
        """The sender as records and logs name it (from the PROXY header when one came)."""
        if self._client is None:
            self._client = self.name_client(self._peer)  # type: ignore[misc]
        return self._client

    def name_client(self, peer: Any) -> str:
        """``host:port``, after ``SCHEME://`` when the input has one (``syslog+tcp://``, ``http://``)."""
        return f"{self._scheme}://{format_peer(peer)}" if self._scheme else format_peer(peer)

    def _proxy_header(self, data: bytes | memoryview) -> bytes:
        """Consume the PROXY protocol header; return the bytes after it (b"" while incomplete)."""
        assert self._proxy_parser is not None
        try:
            found = self._proxy_parser.feed(bytes(data))
        except ProxyProtocolError as exc:
            self._stats.proxy_header_errors += 1
            log.warning("refusing connection from %s: %s (--proxy-protocol is on)", self.client, exc)
            self.abort()
            return b""
        if found is None:
            return b""
        header, rest = found
        # The slots are the concrete class's: a mixin with slots of its own could not be mixed into two.
        self._proxy_parser = None  # type: ignore[misc]
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        if header.source is not None:
            self._client = self.name_client(header.source)  # type: ignore[misc]
            # The class using the mixin is a Connection (relay.net.registry).
            conn = cast(Connection, self)
            refusal = self._not_allowed(header.source[0]) or self._registry.rehome(conn, header.source[0])
            if refusal is not None:
                self._refuse(refusal)
                return b""
        return rest

    def _not_allowed(self, host: str) -> str | None:
        """Why ``host`` may not send, under --allow; None if it may."""
        networks = self._settings.allow
        if not networks:
            return None
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return f"{host!r} is not an IP address and --allow is set"
        if any(address in network for network in networks):
            return None
        self._stats.connections_not_allowed += 1
        return "its address is not in the allowed networks (--allow)"

    def _refuse(self, reason: str) -> None:
        self._stats.connections_refused += 1
        log.warning("refusing connection from %s: %s", self.client, reason)
        self.abort()

    def _header_too_slow(self) -> None:
        if self._proxy_parser is not None:
            self._stats.proxy_header_errors += 1
            log.warning(
                "refusing connection from %s: no PROXY protocol header within %gs", self.client, PROXY_HEADER_DEADLINE
            )
            self.abort()
