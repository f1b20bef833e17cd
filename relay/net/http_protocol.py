"""One HTTP client connection: :class:`HttpProtocol`, records by HTTP into the publisher.

HTTP/1.1 is parsed by h11 (sans-I/O; docs/decisions.md says why); what a
request's body holds is :mod:`relay.decode.http_records`'s.  The connection
behaves as :class:`relay.net.protocol.CatcherProtocol` does towards the
rest of the catcher: the same PROXY header, ``--allow`` networks,
connection limits (:class:`~relay.net.registry.ConnectionRegistry`, whose
:class:`~relay.net.registry.Connection` it is) and flow control.

Per request: the answer goes out only once its records are in the
publisher's buffer (``add_records`` is synchronous), so a 2xx means
accepted.  Keep-alive and pipelining: requests are answered one at a time,
in the order received.  A body over ``max-frame-bytes`` is refused from its
``Content-Length`` (413) before it is read; missing or wrong credentials
answer 401 once the body is read and dropped (the connection stays usable);
a full buffer answers 503 with ``Retry-After`` and keeps nothing of the
request.  A request must arrive whole within ``frame-timeout``: the server's
sweep cuts it by :attr:`frame_started`, as it cuts a slow frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from http import HTTPStatus
from typing import Any, Final, cast

import h11
import orjson

from relay.decode.frames import BadFrame, Record
from relay.decode.http_records import BasicAuth, HttpRequest, RequestRefused, decode_request
from relay.net.admission import Admission
from relay.net.proxy_header import ProxyHeaderParser
from relay.net.registry import ConnectionRegistry
from relay.publish.publisher import StreamPublisher
from relay.settings import CatcherSettings

__all__ = ["MAX_HEAD_BYTES", "RETRY_AFTER_SECONDS", "HttpProtocol"]

log = logging.getLogger("logrelay.catcher")

#: The request line and headers together; at least this, more when max-frame-bytes allows,
#: since a GET from HTTPHandler carries its whole record in the request line.
MAX_HEAD_BYTES: Final = 64 * 1024
#: What a 503 asks the client to wait (the buffer drains in well under that while Redis answers).
RETRY_AFTER_SECONDS: Final = 1
# Refused credentials are logged at most this often (seconds); the count is in the stats.
AUTH_LOG_INTERVAL: Final = 10.0


class HttpProtocol(Admission, asyncio.Protocol):
    """One client connection speaking HTTP/1.x: ``HTTPHandler`` forms, JSON, NDJSON.

    ``tls``: the transport is TLS (the records' ``client`` then reads
    ``https://HOST:PORT``, ``http://HOST:PORT`` otherwise).
    """

    __slots__ = (
        "_auth",
        "_body",
        "_body_size",
        "_client",
        "_h11",
        "_header_deadline",
        "_leaving",
        "_paused",
        "_peer",
        "_proxy_parser",
        "_publisher",
        "_refusal",
        "_refused_requests",
        "_registry",
        "_request",
        "_scheme",
        "_settings",
        "_stats",
        "_transport",
        "frame_started",
        "host",
        "last_active",
    )

    _last_auth_log: float = -AUTH_LOG_INTERVAL

    def __init__(
        self,
        settings: CatcherSettings,
        registry: ConnectionRegistry,
        publisher: StreamPublisher,
        *,
        tls: bool = False,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._publisher = publisher
        self._stats = registry.stats
        self._scheme = "https" if tls else "http"
        self._auth = BasicAuth(settings.http_credentials)
        self._h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=max(MAX_HEAD_BYTES, settings.limits.max_frame_bytes)
        )
        self._transport: asyncio.Transport | None = None
        self._peer: Any = None
        self._client: str | None = None
        self.host = ""
        self.last_active = time.monotonic()
        self.frame_started: float | None = None
        self._paused = False
        self._leaving = False
        self._proxy_parser: ProxyHeaderParser | None = None
        self._header_deadline: asyncio.TimerHandle | None = None
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._body_size = 0
        # The answer decided before the body arrived (401), sent once it has.
        self._refusal: tuple[int, str] | None = None
        self._refused_requests = 0

    # -- asyncio callbacks ----------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self._proxy_parser is not None:
            data = self._proxy_header(data)  # relay.net.admission
            if not data:
                return
        if self.frame_started is None:
            self.frame_started = self.last_active
        self._h11.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        # Answer what came before the client's FIN; then asyncio closes our side.
        self._h11.receive_data(b"")
        self._process()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._body = bytearray()
        if self._refused_requests > 1:
            log.info("HTTP connection from %s had %d requests refused in all", self.client, self._refused_requests)

    # -- requests ---------------------------------------------------------------

    def _process(self) -> None:
        """Handle every event h11 has complete, in order, until it needs more bytes or we pause."""
        connection = self._h11
        # Bounded: each turn consumes buffered bytes, or answers and ends the loop.
        while not self._paused and self._transport is not None and not self._transport.is_closing():
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                self._stats.http_bad_requests += 1
                log.warning("closing HTTP connection from %s: %s", self.client, exc)
                self._answer(exc.error_status_hint, {"error": str(exc)}, close=True)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED or type(event) is h11.ConnectionClosed:
                break
            if type(event) is h11.Request:
                self._started(event)
            elif type(event) is h11.Data:
                self._body_part(event.data)
            elif type(event) is h11.EndOfMessage:
                self._finished()
        if connection.their_state is h11.IDLE and not connection.trailing_data[0]:
            self.frame_started = None

    def _started(self, request: h11.Request) -> None:
        self._request = request
        self._body = bytearray()
        self._body_size = 0
        self._refusal = None
        limit = self._settings.limits.max_frame_bytes
        length = _header(request, b"content-length")
        if length is not None and int(length) > limit:
            self._stats.http_too_large += 1
            log.warning(
                "refusing HTTP request from %s: a body of %s bytes (max-frame-bytes %d)", self.client, length, limit
            )
            self._answer(413, {"error": f"body over {limit} bytes"}, close=True)
            return
        accepted, user = self._auth.check(_header(request, b"authorization"))
        if not accepted:
            self._stats.http_refused_auth += 1
            self._log_refused_auth(user)
            self._refusal = (401, "credentials needed")
        elif self._h11.they_are_waiting_for_100_continue:
            self._transport_write(self._h11.send(h11.InformationalResponse(status_code=100, headers=[])))

    def _body_part(self, data: bytes) -> None:
        self._body_size += len(data)
        limit = self._settings.limits.max_frame_bytes
        if self._body_size > limit:
            # Chunked, so no Content-Length said it before.
            self._stats.http_too_large += 1
            log.warning("refusing HTTP request from %s: a body over %d bytes (max-frame-bytes)", self.client, limit)
            self._answer(413, {"error": f"body over {limit} bytes"}, close=True)
        elif self._refusal is None:
            self._body += data

    def _finished(self) -> None:
        request = self._request
        assert request is not None
        body, self._body = bytes(self._body), bytearray()
        self._stats.http_requests += 1
        if self._refusal is not None:
            status, reason = self._refusal
            self._answer(status, {"error": reason}, [(b"www-authenticate", b'Basic realm="logrelay"')])
            return
        if self._publisher.full:
            # Keep nothing: the client may send it again, or elsewhere.
            self._stats.http_busy += 1
            self._answer(503, {"error": "buffer full"}, [(b"retry-after", b"%d" % RETRY_AFTER_SECONDS)])
            return
        now = time.time()
        try:
            events = decode_request(
                HttpRequest(request.method, request.target, request.headers, body), self._settings.limits, now
            )
        except RequestRefused as exc:
            self._stats.http_bad_requests += 1
            self._refused_requests += 1
            # The first per connection is logged; the others are counted, and summarised at close.
            level = logging.INFO if self._refused_requests == 1 else logging.DEBUG
            log.log(level, "HTTP request from %s refused (%d): %s", self.client, exc.status, exc.reason)
            extra = [(b"allow", b"GET, POST")] if exc.status == 405 else []
            self._answer(exc.status, {"error": exc.reason}, extra)
            return
        received = f"{now:.6f}"
        records: list[Record] = []
        rejected = 0
        for event in events:
            if type(event) is BadFrame:
                rejected += 1
                self._dead_letter(event, received)
            else:
                records.append(cast(Record, event))
        self._publisher.add_records(records, self.client, received)
        # Every record went to the dead letters: the sender should hear of it.
        status = 400 if rejected and not records else 200
        self._answer(status, {"accepted": len(records), "rejected": rejected})

    def _answer(
        self,
        status: int,
        content: dict[str, Any],
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        close: bool = False,
    ) -> None:
        """Send one whole response; then read the next request, or close."""
        connection = self._h11
        if connection.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self.abort()  # nothing sensible can be said any more
            return
        head_only = self._request is not None and self._request.method == b"HEAD"
        body = b"" if head_only else orjson.dumps(content) + b"\n"
        fields = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), *(headers or [])]
        if close or self._leaving:
            fields.append((b"connection", b"close"))
        try:
            data = b"".join(
                connection.send(event) or b""
                for event in (
                    h11.Response(status_code=status, headers=fields, reason=HTTPStatus(status).phrase),
                    *([h11.Data(data=body)] if body else []),
                    h11.EndOfMessage(),
                )
            )
        except h11.LocalProtocolError as exc:
            log.warning("closing HTTP connection from %s: %s", self.client, exc)
            self.abort()
            return
        self._transport_write(data)
        state: object = connection.our_state  # moved on by the sends above
        if state is h11.MUST_CLOSE:
            self.close()
        elif state is h11.DONE and connection.their_state is h11.DONE:
            connection.start_next_cycle()
            self._request = None

    def _transport_write(self, data: bytes | None) -> None:
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _dead_letter(self, bad: BadFrame, received: str) -> None:
        self._stats.bad_frames += 1
        self._publisher.add_dead_letter(bad.raw, bad.reason, self.client, received)
        log.debug("HTTP record from %s (%d bytes) sent to dead letters: %s", self.client, len(bad.raw), bad.reason)

    def _log_refused_auth(self, user: str) -> None:
        now = time.monotonic()
        if now - HttpProtocol._last_auth_log >= AUTH_LOG_INTERVAL:
            HttpProtocol._last_auth_log = now
            who = f"user {user!r}" if user else "no credentials"
            log.warning(
                "refusing HTTP request from %s: %s not accepted (--http-basic-auth; %d refused in all)",
                self.client,
                who,
                self._stats.http_refused_auth,
            )

    # -- used by the registry and the server (relay.net.registry.Connection) -------

    @property
    def at_frame_boundary(self) -> bool:
        """No request half-received (nothing lost by closing now)."""
        connection = self._h11
        return (
            connection.their_state in (h11.IDLE, h11.DONE, h11.MUST_CLOSE, h11.CLOSED)
            and not (connection.trailing_data[0])
        )

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Stop reading for the publisher's sake, unless its buffer is full.

        Full (Redis away), a request is answered 503 at once rather than held:
        ``HTTPHandler.emit`` blocks its caller until it has an answer.  Reading
        ahead of Redis pauses as any connection does (TCP pushes back).
        """
        if self._publisher.full:
            return
        if not self._paused and self._transport is not None and not self._transport.is_closing():
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self._transport is not None and not self._transport.is_closing():
            self._paused = False
            # Time spent paused by us does not count against the client.
            self.last_active = time.monotonic()
            if self.frame_started is not None:
                self.frame_started = self.last_active
            self._transport.resume_reading()
            # Requests already received (pipelined) are answered on the next turn,
            # not inside the publisher's call that resumed us.
            asyncio.get_running_loop().call_soon(self._process)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def ask_to_leave(self) -> None:
        """The catcher is stopping: the next answer says ``Connection: close``; the server closes it when quiet."""
        self._leaving = True


def _header(request: h11.Request, name: bytes) -> bytes | None:
    for key, value in request.headers:
        if key == name:
            return value
    return None
