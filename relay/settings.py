"""Settings objects: one frozen dataclass per process, validated on construction.

The CLI maps its options straight onto these (see :mod:`relay.cli`); library
users and tests build them directly.  Nothing here performs I/O.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from relay.framebudget import large_frame_share
from relay.publishscript import FullPolicy
from relay.wire import DecodeLimits

__all__ = [
    "DEFAULT_LINGER_MS",
    "DEFAULT_LISTEN",
    "DEFAULT_STREAM",
    "MAX_LINGER_MS",
    "CatcherSettings",
    "ListenAddress",
    "RedisSettings",
    "StreamKeys",
    "TLSSettings",
    "parse_byte_size",
    "parse_network",
]

# logging.handlers.DEFAULT_TCP_LOGGING_PORT
DEFAULT_PORT: Final = 9020
DEFAULT_LISTEN: Final = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_STREAM: Final = "logrelay"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
#: A partial batch's wait for more records (README, "Performance": what it buys), and its ceiling.
DEFAULT_LINGER_MS: Final = 2.0
MAX_LINGER_MS: Final = 1000.0

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS: Final = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_byte_size(text: str) -> int:
    """Parse ``"1048576"``, ``"512KiB"``, ``"1M"`` or ``"2 GiB"`` into bytes (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a byte size: {text!r} (try 1048576, 512KiB or 1MiB)")
    number, unit, _ = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where a server listens: ``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (all interfaces)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError(f"port out of range in {text!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return cls(host or "0.0.0.0", port)

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """The Redis keys one stream of records uses.

    Every key a catcher writes in one script call must live in one hash slot
    for Redis Cluster, so the derived keys carry the stream name as a hash tag
    (``{logrelay}:dead``), unless the stream name already has one.
    """

    records: str = DEFAULT_STREAM
    dead_letters: str = ""

    def __post_init__(self) -> None:
        if not self.records:
            raise ValueError("the stream key must not be empty")
        if not self.dead_letters:
            object.__setattr__(self, "dead_letters", f"{self.tag}:dead")

    @property
    def tag(self) -> str:
        """The stream name as a hash tag, for keys that must share its slot."""
        start = self.records.find("{")
        if start >= 0 and self.records.find("}", start + 2) > start:
            return self.records
        return "{" + self.records + "}"

    def producer(self, producer_id: str) -> str:
        """Key holding the last batch sequence number a catcher process applied."""
        return f"{self.tag}:producer:{producer_id}"


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """How to reach Redis.  Build with :meth:`from_url`."""

    url: str = DEFAULT_REDIS_URL
    socket_timeout: float = 5.0
    connect_timeout: float = 2.0

    @classmethod
    def from_url(cls, url: str, **options: float) -> RedisSettings:
        """Validate a ``redis://``, ``rediss://`` or ``unix://`` URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} in {url!r}")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError(f"no host in Redis URL {url!r}")
        return cls(url=url, **options)

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for logs."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str) -> IPNetwork:
    """``10.0.0.0/8``, ``2001:db8::/32`` or a single address."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise ValueError(f"not a network: {text!r} (try 10.0.0.0/8)") from exc


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """TLS on the catcher's listener; with ``client_ca``, clients must present a certificate it signed."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def context(self) -> ssl.SSLContext:
        """The server context; raises ``ValueError`` naming the file that does not load."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert, self.key)
            if self.client_ca is not None:
                context.load_verify_locations(cafile=self.client_ca)
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the TLS certificate, key or CA: {exc}") from exc
        return context


def default_catcher_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class CatcherSettings:
    """Everything one ``logrelay catch`` process needs."""

    listen: ListenAddress = field(default_factory=lambda: ListenAddress.parse(DEFAULT_LISTEN))
    redis: RedisSettings = field(default_factory=RedisSettings)
    keys: StreamKeys = field(default_factory=StreamKeys)
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    catcher_id: str = field(default_factory=default_catcher_id)
    # Most entries the stream may hold (0: no limit), and what to do at it.
    max_stream_length: int = 1_000_000
    full_policy: FullPolicy = "block"
    # Records held between the sockets and Redis, in bytes of encoded entry.
    buffer_bytes: int = 256 * 1024 * 1024
    # Incomplete frames held by all connections together (relay.framebudget).
    max_partial_bytes: int = 64 * 1024 * 1024
    batch_max_records: int = 1000
    batch_max_bytes: int = 1024 * 1024
    # Batches in flight to Redis at once, sent ahead of their replies (relay.publisher).
    publish_window: int = 16
    # Milliseconds a partial batch waits for more records (relay.publisher); 0: sent at once.
    linger_ms: float = DEFAULT_LINGER_MS
    max_connections: int = 10_000
    # Per client address (after the PROXY header, if any); 0: no limit.
    max_connections_per_client: int = 1000
    idle_timeout: float = 3600.0
    # A frame that started arriving must be complete within this (slow loris); 0: no limit.
    frame_timeout: float = 30.0
    drain_timeout: float = 5.0
    shutdown_timeout: float = 30.0
    stats_interval: float = 60.0
    # Behind a balancer: expect a PROXY protocol v1/v2 header on every connection.
    proxy_protocol: bool = False
    # HTTP liveness/readiness/metrics; None: no endpoint.
    health_listen: ListenAddress | None = None
    # On SIGTERM, seconds to stay up while not ready, so a balancer drains us.
    shutdown_grace: float = 0.0
    # Client networks allowed to send (after the PROXY header, if any); empty: everyone.
    allow: tuple[IPNetwork, ...] = ()
    tls: TLSSettings | None = None

    def __post_init__(self) -> None:
        positive = ("buffer_bytes", "batch_max_records", "batch_max_bytes", "publish_window", "max_connections")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name.replace('_', '-')} must be positive")
        if self.tls is not None and self.proxy_protocol:
            raise ValueError("--proxy-protocol with TLS on the catcher is not supported: terminate TLS at the balancer")
        if self.max_stream_length < 0:
            raise ValueError("max-stream-length must not be negative")
        if not 0 <= self.linger_ms <= MAX_LINGER_MS:
            raise ValueError(f"linger-ms must be between 0 and {MAX_LINGER_MS}")
        if self.full_policy not in ("block", "shed"):
            raise ValueError("full-policy must be block or shed")
        if self.max_connections_per_client < 0:
            raise ValueError("max-connections-per-client must not be negative")
        for name in (
            "idle_timeout",
            "frame_timeout",
            "drain_timeout",
            "shutdown_timeout",
            "stats_interval",
            "shutdown_grace",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name.replace('_', '-')} must not be negative")
        if self.buffer_bytes < self.limits.max_decoded_bytes:
            raise ValueError("buffer-bytes must hold at least one maximum-size record")
        if large_frame_share(self.max_partial_bytes) < self.limits.max_frame_bytes + 4:
            raise ValueError(
                "max-partial-bytes must hold a maximum-size frame (max-frame-bytes) in seven eighths of it"
            )
        if not self.catcher_id:
            raise ValueError("catcher-id must not be empty")
