"""A catcher's small HTTP endpoint: liveness, readiness and metrics.

For load balancers (HAProxy ``option httpchk GET /readyz``), container
healthchecks and Prometheus, on a port of its own (``--health-listen``):

* ``GET /livez``: 200 while the event loop answers;
* ``GET /readyz``: 200 when the catcher should get new connections (Redis
  answers, its buffer has room, and it is not stopping), else 503 with the
  reason ("Redis unreachable", "buffer full", "stopping");
* ``GET /metrics``: the counters in Prometheus' text format, the readiness,
  and which C speedups run (``logrelay_speedup_in_use``).

It speaks just enough HTTP/1.x for those clients: one request per
connection, a bounded request head, a short read deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from relay.common import speedups
from relay.common.addresses import ListenAddress
from relay.common.counters import CatcherStats

__all__ = ["HealthServer", "Readiness", "render_metrics"]

log = logging.getLogger("logrelay.health")

MAX_REQUEST_HEAD = 8192
READ_DEADLINE = 5.0

# Counters that only grow get the Prometheus _total suffix; the rest are gauges.
_GAUGES = frozenset({"connections", "buffered"})


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str


def render_metrics(stats: CatcherStats, ready: bool) -> str:
    """The counters in Prometheus' text exposition format."""
    lines = []
    for name, value in stats.as_dict().items():
        kind = "gauge" if name in _GAUGES else "counter"
        metric = f"logrelay_catcher_{name}" + ("" if kind == "gauge" else "_total")
        lines += [f"# TYPE {metric} {kind}", f"{metric} {value}"]
    lines += ["# TYPE logrelay_catcher_ready gauge", f"logrelay_catcher_ready {int(ready)}"]
    # 1 where the module's C extension runs, 0 where its Python reference does.
    lines.append("# TYPE logrelay_speedup_in_use gauge")
    lines += [
        f'logrelay_speedup_in_use{{module="{name}"}} {int(how == "c")}' for name, how in sorted(speedups.IN_USE.items())
    ]
    return "\n".join(lines) + "\n"


class HealthServer:
    def __init__(self, listen: ListenAddress, readiness: Callable[[], Readiness], stats: CatcherStats) -> None:
        self.listen = listen
        self.readiness = readiness
        self.stats = stats
        self._server: asyncio.Server | None = None
        self.port: int | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.listen.host, self.listen.port, reuse_address=True, limit=MAX_REQUEST_HEAD
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("health endpoint on %s:%d (/livez, /readyz, /metrics)", self.listen.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_DEADLINE)
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, _, rest = request_line.partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            status, body, content_type = self._respond(method, path)
            response = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode() + body
            if method == "HEAD":
                response = response[: len(response) - len(body)]
            writer.write(response)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
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
            body = render_metrics(self.stats, self.readiness().ready).encode()
            return "200 OK", body, "text/plain; version=0.0.4"
        return "404 Not Found", b"try /livez, /readyz or /metrics\n", "text/plain"
