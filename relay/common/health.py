"""A process's small HTTP endpoint: liveness, readiness and metrics, for a catcher, a consumer, or both.

For load balancers (HAProxy ``option httpchk GET /readyz``), container
healthchecks and Prometheus, on a port of its own (``--health-listen``):

* ``GET /livez``: 200 while the event loop answers;
* ``GET /readyz``: 200 when the process should get work, else 503 with the
  reason; what "ready" means is the readiness callable's (a catcher:
  :meth:`relay.server.CatcherServer.readiness`; a consumer:
  :meth:`consumers.file_consumer.FileConsumer.readiness`; ``logrelay up``:
  both, :func:`all_ready`);
* ``GET /metrics``: the process's Prometheus registry
  (:mod:`relay.common.metrics`) in the text format.

It speaks just enough HTTP/1.x for those clients: one request per
connection, a bounded request head, a short read deadline.  It runs on the
process's event loop, so /livez answering means the loop does, and no
thread reads the counters while the loop bumps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from relay.common.addresses import ListenAddress
from relay.common.metrics import render
from relay.common.signals import StartError

__all__ = ["HealthServer", "Readiness", "all_ready"]

log = logging.getLogger("logrelay.health")

MAX_REQUEST_HEAD = 8192
READ_DEADLINE = 5.0
#: Connections served at once; more are closed on arrival, so a flood of them cannot take the
#: process's file descriptors (the catcher's connections need them) nor hold the loop.
MAX_CONNECTIONS = 64


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str


def all_ready(parts: dict[str, Callable[[], Readiness]]) -> Callable[[], Readiness]:
    """One readiness for several parts of a process (``logrelay up``): ready when all are, else the first reason.

    The reason names the part: ``consumer: standing by for the lock of PATH``.
    """

    def readiness() -> Readiness:
        for name, part in parts.items():
            answer = part()
            if not answer.ready:
                return Readiness(False, f"{name}: {answer.reason}")
        return Readiness(True, "ready")

    return readiness


class HealthServer:
    """Serves /livez, /readyz (``readiness``) and /metrics (``registry``) on ``listen`` once started."""

    def __init__(self, listen: ListenAddress, readiness: Callable[[], Readiness], registry: CollectorRegistry) -> None:
        self.listen = listen
        self.readiness = readiness
        self.registry = registry
        self._server: asyncio.Server | None = None
        self.port: int | None = None
        self.open_connections = 0

    async def start(self) -> None:
        """Listen; raise :class:`StartError` naming the address if it cannot be bound (in use, not ours)."""
        try:
            self._server = await asyncio.start_server(
                self._handle, self.listen.host, self.listen.port, reuse_address=True, limit=MAX_REQUEST_HEAD
            )
        except OSError as exc:
            # One line, from the CLI (relay.common.signals.run_command), naming this address and its option, in
            # the listeners' form (relay.net.inputs), not the --listen address run_command would name.
            # asyncio's message repeats the address; the errno's own text does not.
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartError(f"cannot listen on {self.listen} (--health-listen): {reason}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("health endpoint on %s:%d (/livez, /readyz, /metrics)", self.listen.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= MAX_CONNECTIONS:
            writer.close()  # nothing written: closes at once
            return
        self.open_connections += 1
        try:
            # One deadline for the whole exchange: a client that sends slowly or never reads is dropped.
            async with asyncio.timeout(READ_DEADLINE):
                head = await reader.readuntil(b"\r\n\r\n")
                request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
                method, _, rest = request_line.partition(" ")
                path = rest.split(" ", 1)[0].split("?", 1)[0]
                try:
                    status, body, content_type = self._respond(method, path)
                except Exception:
                    # A bug in a readiness callable or a collector: a 500, the traceback in our log only.
                    log.exception("health endpoint: %s %s failed", method, path)
                    status, body, content_type = "500 Internal Server Error", b"internal error\n", "text/plain"
                response = (
                    f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode() + body
                if method == "HEAD":
                    response = response[: len(response) - len(body)]
                writer.write(response)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()  # a client that does not read: close() would wait on it
        finally:
            self.open_connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _respond(self, method: str, path: str) -> tuple[str, bytes, str]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"GET only\n", "text/plain"
        if path == "/livez":
            return "200 OK", b"ok\n", "text/plain"
        if path == "/readyz":
            readiness = self.readiness()
            status = "200 OK" if readiness.ready else "503 Service Unavailable"
            return status, readiness.reason.encode() + b"\n", "text/plain"
        if path == "/metrics":
            return "200 OK", render(self.registry), CONTENT_TYPE_PLAIN_0_0_4
        return "404 Not Found", b"try /livez, /readyz or /metrics\n", "text/plain"
