"""Settings objects: one frozen dataclass per process, validated on construction.

The CLI maps its options straight onto these (see :mod:`relay.cli`); library
users and tests build them directly.  Nothing here performs I/O.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from relay.common.addresses import IPNetwork, ListenAddress
from relay.common.identity import process_name
from relay.common.redis_client import RedisSettings
from relay.common.stream import DEFAULT_DEAD_LETTER_MAX_LENGTH, StreamKeys
from relay.decode.frames import DecodeLimits
from relay.net.partial_frames import large_frame_share
from relay.publish.script import FullPolicy

__all__ = [
    "DEFAULT_LINGER_MS",
    "DEFAULT_LISTEN",
    "MAX_LINGER_MS",
    "CatcherSettings",
    "TLSSettings",
]

# logging.handlers.DEFAULT_TCP_LOGGING_PORT
DEFAULT_PORT: Final = 9020
DEFAULT_LISTEN: Final = f"127.0.0.1:{DEFAULT_PORT}"
#: A partial batch's wait for more records (relay.publish.batching says what it buys), and its ceiling.
DEFAULT_LINGER_MS: Final = 2.0
MAX_LINGER_MS: Final = 1000.0


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


@dataclass(frozen=True, slots=True)
class CatcherSettings:
    """Everything one ``logrelay catch`` process needs."""

    listen: ListenAddress = field(default_factory=lambda: ListenAddress.parse(DEFAULT_LISTEN))
    redis: RedisSettings = field(default_factory=RedisSettings)
    keys: StreamKeys = field(default_factory=StreamKeys)
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    catcher_id: str = field(default_factory=process_name)
    # Most entries the stream may hold (0: no limit), and what to do at it.
    max_stream_length: int = 1_000_000
    full_policy: FullPolicy = "block"
    # Most dead letters kept (about: trimmed by whole stream nodes); the oldest go first, counted.  0: no limit.
    dead_letter_max_length: int = DEFAULT_DEAD_LETTER_MAX_LENGTH
    # Records held between the sockets and Redis, in bytes of encoded entry.
    buffer_bytes: int = 256 * 1024 * 1024
    # Incomplete frames held by all connections together (relay.net.partial_frames).
    max_partial_bytes: int = 64 * 1024 * 1024
    batch_max_records: int = 1000
    batch_max_bytes: int = 1024 * 1024
    # Batches in flight to Redis at once, sent ahead of their replies (relay.publish.publisher).
    publish_window: int = 16
    # Milliseconds a partial batch waits for more records (relay.publish.publisher); 0: sent at once.
    linger_ms: float = DEFAULT_LINGER_MS
    # A batch counts as published once this many replicas acknowledged it (WAIT); 0: once the master applied it.
    wait_replicas: int = 0
    # How long one WAIT may hold the publishing connection, in milliseconds.
    wait_timeout_ms: float = 100.0
    max_connections: int = 10_000
    # Per client address (after the PROXY header, if any); 0: no limit.
    max_connections_per_client: int = 1000
    # Close a connection silent this long, even on a frame boundary; 0: never (keepalive finds dead peers,
    # relay.net.keepalive): a stock SocketHandler loses its next records to a close it cannot see.
    idle_timeout: float = 0.0
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
    # The other inputs (relay.net.inputs): stdlib DatagramHandler (UDP), syslog (UDP and TCP on one port),
    # HTTP (stdlib HTTPHandler, JSON); None: not listened on.
    listen_datagram: ListenAddress | None = None
    listen_syslog: ListenAddress | None = None
    listen_http: ListenAddress | None = None
    # HTTP basic-auth credentials (user, password) accepted on --listen-http; empty: none asked for.
    http_credentials: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        positive = ("buffer_bytes", "batch_max_records", "batch_max_bytes", "publish_window", "max_connections")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name.replace('_', '-')} must be positive")
        if self.tls is not None and self.proxy_protocol:
            raise ValueError("--proxy-protocol with TLS on the catcher is not supported: terminate TLS at the balancer")
        if self.max_stream_length < 0:
            raise ValueError("max-stream-length must not be negative")
        if self.dead_letter_max_length < 0:
            raise ValueError("dead-letter-max-length must not be negative")
        if not 0 <= self.linger_ms <= MAX_LINGER_MS:
            raise ValueError(f"linger-ms must be between 0 and {MAX_LINGER_MS}")
        if self.full_policy not in ("block", "shed"):
            raise ValueError("full-policy must be block or shed")
        if self.max_connections_per_client < 0:
            raise ValueError("max-connections-per-client must not be negative")
        if self.wait_replicas < 0:
            raise ValueError("wait-replicas must not be negative")
        if not 1 <= self.wait_timeout_ms <= 60_000:
            raise ValueError("wait-timeout-ms must be between 1 and 60000")
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
