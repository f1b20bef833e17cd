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
    _proxy_parser: ProxyHeaderParser | None
    _header_deadline: asyncio.TimerHandle | None

    if TYPE_CHECKING:

        @property
        def client(self) -> str: ...

        def abort(self) -> None: ...

    def name_client(self, peer: Any) -> str:
        """How records and logs name the client at ``peer`` (a socket address)."""
        return format_peer(peer)

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
