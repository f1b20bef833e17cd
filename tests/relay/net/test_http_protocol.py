"""HttpProtocol on a real loopback server, a real publisher on a real redis-server, and real clients.

The stdlib ``HTTPHandler`` runs in a separate interpreter (``sys.executable -c``), so it is the real
handler with its own sockets; JSON clients are urllib; a few raw sockets say what no client library
sends on purpose (pipelining, a malformed request, an oversized Content-Length).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis

from relay.common.counters import CatcherStats
from relay.common.stream import StreamKeys
from relay.decode.frames import DecodeLimits
from relay.net.http_protocol import HttpProtocol
from relay.net.registry import ConnectionRegistry
from relay.publish.publisher import StreamPublisher
from relay.settings import CatcherSettings
from tests.support.polling import async_wait_until

KEYS = StreamKeys("logs")


@dataclass
class Served:
    port: int
    stats: CatcherStats
    publisher: StreamPublisher
    registry: ConnectionRegistry
    redis: Redis

    async def entries(self, count: int) -> list[dict[bytes, bytes]]:
        """The first ``count`` record entries, once the stream holds them."""

        async def enough() -> bool:
            return bool(await self.redis.xlen(KEYS.records) >= count)

        await async_wait_until(enough, what=f"{count} entries in the stream")
        return [fields for _, fields in await self.redis.xrange(KEYS.records)]

    async def records(self, count: int) -> list[dict[str, Any]]:
        return [json.loads(fields[b"record"]) for fields in await self.entries(count)]


@pytest.fixture
async def serve(redis: Redis) -> AsyncIterator[Any]:
    """Start an HttpProtocol server (settings as given) and its publisher; all stopped at teardown."""
    started: list[tuple[asyncio.Server, ConnectionRegistry, StreamPublisher, asyncio.Task[None] | None]] = []

    async def start(*, buffer_bytes: int = 1 << 20, publishing: bool = True, **options: Any) -> Served:
        settings = CatcherSettings(keys=KEYS, **options)
        stats = CatcherStats()
        registry = ConnectionRegistry(settings.max_connections, stats)
        publisher = StreamPublisher(
            redis, KEYS, catcher_id="http-test", buffer_bytes=buffer_bytes, stats=stats, flow=registry
        )
        task = asyncio.create_task(publisher.run()) if publishing else None
        server = await asyncio.get_running_loop().create_server(
            lambda: HttpProtocol(settings, registry, publisher), "127.0.0.1", 0
        )
        started.append((server, registry, publisher, task))
        return Served(server.sockets[0].getsockname()[1], stats, publisher, registry, redis)

    yield start
    for server, registry, publisher, task in started:
        server.close()
        for conn in list(registry.connections):
            conn.abort()
        await server.wait_closed()
        publisher.close()
        if task is not None:
            await asyncio.wait_for(task, 10)


HANDLER_SCRIPT = """
import datetime, logging, logging.handlers, sys
port, method, credentials = int(sys.argv[1]), sys.argv[2], tuple(sys.argv[3:5]) or None
handler = logging.handlers.HTTPHandler(f"127.0.0.1:{port}", "/ingest/app", method, credentials=credentials)
def handle_error(record):
    raise SystemExit(f"HTTPHandler failed: {sys.exc_info()[1]!r}")
handler.handleError = handle_error
log = logging.getLogger("shop.orders")
log.propagate = False
log.addHandler(handler)
log.setLevel(logging.DEBUG)
log.warning("order %s for %d items at %.2f", "A-17", 3, 9.5, extra={"tenant": "acme"})
log.info("%(user)s paid", {"user": "bob"})
log.info("100%% done")
log.debug("when %s", datetime.date(2024, 5, 1))
try:
    1 / 0
except ZeroDivisionError:
    log.exception("failed %s", "hard")
"""


async def run_handler(port: int, method: str, *credentials: str) -> tuple[int, str]:
    """Run the stdlib HTTPHandler script in its own interpreter; its exit status and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(HANDLER_SCRIPT),
        str(port),
        method,
        *credentials,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, stderr.decode()


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_stdlib_http_handler_records_arrive_value_for_value(serve: Any, method: str) -> None:
    served = await serve(http_credentials=(("fleet", "s3cret"),))
    status, stderr = await run_handler(served.port, method, "fleet", "s3cret")
    assert status == 0, stderr
    entries = await served.entries(5)
    assert {fields[b"client"].decode().rpartition(":")[0] for fields in entries} == {"http://127.0.0.1"}
    order, paid, done, when, failed = (json.loads(fields[b"record"]) for fields in entries)
    assert order["msg"] == "order A-17 for 3 items at 9.50"
    assert order["args"] is None
    assert order["tenant"] == "acme"
    assert order["levelname"] == "WARNING"
    assert order["levelno"] == 30
    assert type(order["levelno"]) is int
    assert order["name"] == "shop.orders"
    assert order["funcName"] == "<module>"
    assert type(order["lineno"]) is int
    assert type(order["created"]) is float
    assert type(order["msecs"]) is float
    assert type(order["process"]) is int
    assert order["exc_info"] is None
    assert order["exc_text"] is None
    assert order["stack_info"] is None
    assert paid["msg"] == "bob paid"
    assert done["msg"] == "100%% done"
    assert when["msg"] == "when %s"
    assert when["args_text"] == "(datetime.date(2024, 5, 1),)"
    assert failed["msg"] == "failed hard"
    assert failed["levelno"] == 40
    assert failed["exc_info_text"].startswith("(<class 'ZeroDivisionError'>, ZeroDivisionError('division by zero')")
    assert served.stats.http_requests == 5
    assert served.stats.records_received == 5


async def test_wrong_or_missing_credentials_are_refused_and_nothing_kept(serve: Any) -> None:
    served = await serve(http_credentials=(("fleet", "s3cret"),))
    for credentials in (("fleet", "wrong"), ()):
        # The handler ignores the answer: it exits cleanly, its records refused.
        status, stderr = await run_handler(served.port, "POST", *credentials)
        assert status == 0, stderr
    assert served.stats.http_refused_auth == 10
    assert await served.redis.xlen(KEYS.records) == 0
    request = urllib.request.Request(f"http://127.0.0.1:{served.port}/", data=b"msg=x", method="POST")
    response = await asyncio.to_thread(fetch, request)
    assert response[0] == 401
    assert response[1]["WWW-Authenticate"] == 'Basic realm="logrelay"'


def fetch(request: urllib.request.Request) -> tuple[int, Any, bytes]:
    """urllib's answer: status, headers, body (an error status too)."""
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def post_json(port: int, body: bytes, content_type: str) -> urllib.request.Request:
    return urllib.request.Request(f"http://127.0.0.1:{port}/v1/logs", data=body, headers={"Content-Type": content_type})


async def test_json_and_ndjson_clients(serve: Any) -> None:
    served = await serve()
    single = post_json(served.port, b'{"message": "one", "levelno": 20, "service": "api"}', "application/json")
    status, _, body = await asyncio.to_thread(fetch, single)
    assert (status, json.loads(body)) == (200, {"accepted": 1, "rejected": 0})
    lines = b'{"msg": "two", "levelname": "error"}\nnot json\n{"msg": "three", "created": 1700000000.5}\n'
    status, _, body = await asyncio.to_thread(fetch, post_json(served.port, lines, "application/x-ndjson"))
    assert (status, json.loads(body)) == (200, {"accepted": 2, "rejected": 1})
    array = b'[{"msg": "four"}, 7]'
    status, _, body = await asyncio.to_thread(fetch, post_json(served.port, array, "application/json"))
    assert (status, json.loads(body)) == (200, {"accepted": 1, "rejected": 1})
    status, _, body = await asyncio.to_thread(fetch, post_json(served.port, b"[1, 2]", "application/json"))
    assert (status, json.loads(body)) == (400, {"accepted": 0, "rejected": 2})
    records = await served.records(4)
    assert [record["msg"] for record in records] == ["one", "two", "three", "four"]
    by_message = {record["msg"]: record for record in records}
    assert by_message["one"]["levelname"] == "INFO"
    assert by_message["one"]["service"] == "api"
    assert by_message["two"]["levelno"] == 40
    assert type(by_message["two"]["created"]) is float
    assert by_message["three"]["created"] == 1700000000.5
    assert by_message["three"]["msecs"] == 500.0

    async def letters() -> int:
        return int(await served.redis.xlen(KEYS.dead_letters))

    await async_wait_until(lambda: letters(), what="dead letters")
    dead = [fields for _, fields in await served.redis.xrange(KEYS.dead_letters)]
    assert dead[0][b"raw"] == b"not json"
    assert dead[0][b"client"].startswith(b"http://127.0.0.1:")


async def test_a_full_buffer_answers_503_with_retry_after_and_keeps_nothing(serve: Any) -> None:
    served = await serve(buffer_bytes=4096, publishing=False)
    record = b'{"msg": "' + b"x" * 500 + b'"}'
    # Bounded: each accepted request adds ~600 bytes to a 4 KiB buffer.
    for _ in range(20):
        if served.publisher.full:
            break
        status, _, _ = await asyncio.to_thread(fetch, post_json(served.port, record, "application/json"))
        assert status == 200
    assert served.publisher.full
    held = served.publisher.buffered
    status, headers, body = await asyncio.to_thread(fetch, post_json(served.port, record, "application/json"))
    assert (status, headers["Retry-After"], json.loads(body)) == (503, "1", {"error": "buffer full"})
    assert served.publisher.buffered == held
    assert served.stats.http_busy == 1
    # Once Redis drains it, the same request is taken.
    task = asyncio.create_task(served.publisher.run())
    try:
        await async_wait_until(lambda: not served.publisher.full, what="the buffer drained")
        status, _, _ = await asyncio.to_thread(fetch, post_json(served.port, record, "application/json"))
        assert status == 200
        assert len(await served.records(held + 1)) == held + 1
    finally:
        served.publisher.close()
        await asyncio.wait_for(task, 10)


def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, then read until the server closes or 2 answers came (blocking: run in a thread)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


async def test_pipelined_requests_on_one_connection_are_answered_in_order(serve: Any) -> None:
    served = await serve()
    requests = b"".join(
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
        for body in (b'{"msg": "p1"}', b'[{"msg": "p2"}, {"msg": "p3"}]', b'{"msg": "p4"}')
    )
    answer = await asyncio.to_thread(exchange, served.port, requests)
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert re.findall(rb'\{"accepted":(\d+),"rejected":0\}', answer) == [b"1", b"2", b"1"]
    assert [record["msg"] for record in await served.records(4)] == ["p1", "p2", "p3", "p4"]
    entries = await served.entries(4)
    assert len({fields[b"client"] for fields in entries}) == 1  # one connection, one client


async def test_malformed_http_is_400_and_closed(serve: Any) -> None:
    served = await serve()
    answer = await asyncio.to_thread(exchange, served.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close" in answer.lower()
    assert served.stats.http_bad_requests == 1


async def test_a_body_over_max_frame_bytes_is_refused_from_its_content_length(serve: Any) -> None:
    served = await serve(limits=DecodeLimits(max_frame_bytes=1000, max_decoded_bytes=4096))
    head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 1001\r\n\r\n"
    answer = await asyncio.to_thread(exchange, served.port, head)  # the body is never sent, nor awaited
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert served.stats.http_too_large == 1
    assert served.publisher.buffered == 0


async def test_other_methods_and_media_types_are_refused_with_their_status(serve: Any) -> None:
    served = await serve()
    put = urllib.request.Request(f"http://127.0.0.1:{served.port}/", data=b"{}", method="PUT")
    status, headers, _ = await asyncio.to_thread(fetch, put)
    assert status == 405
    assert headers["Allow"] == "GET, POST"
    status, _, _ = await asyncio.to_thread(fetch, post_json(served.port, b"msg", "text/plain"))
    assert status == 415
    assert served.stats.http_bad_requests == 2


async def test_allow_list_and_connection_limit_apply(serve: Any) -> None:
    served = await serve(allow=(ipaddress.ip_network("10.0.0.0/8"),))
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        await asyncio.to_thread(fetch, post_json(served.port, b"{}", "application/json"))
    assert served.stats.connections_not_allowed == 1
    limited = await serve(max_connections=1)
    held = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", limited.port))
    try:
        await async_wait_until(lambda: limited.stats.connections == 1, what="the first connection registered")
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            await asyncio.to_thread(fetch, post_json(limited.port, b"{}", "application/json"))
        assert limited.stats.connections_refused == 1
    finally:
        held.close()


async def test_a_partial_request_is_timed_by_frame_started_and_cleared_when_complete(serve: Any) -> None:
    served = await serve()
    sock = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", served.port))
    try:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{")
        await async_wait_until(
            lambda: any(conn.frame_started is not None for conn in served.registry.connections),
            what="a request started",
        )
        [conn] = served.registry.connections
        assert not conn.at_frame_boundary
        sock.sendall(b'"msg": "ok"}')
        await async_wait_until(lambda: conn.frame_started is None, what="the request complete")
        assert conn.at_frame_boundary
    finally:
        sock.close()


async def test_refused_requests_on_one_connection_are_not_a_log_line_each(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Each refused request (400, 405, 415, 413 for too many records) was a log line at INFO:
    # a thousand pipelined "GET /" of 30 bytes each were a thousand lines.
    served = await serve()
    caplog.set_level(logging.INFO, logger="logrelay.catcher")
    requests = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" * 1000
    answer = await asyncio.to_thread(exchange, served.port, requests)
    assert answer.count(b"HTTP/1.1 400 ") == 1000
    assert served.stats.http_bad_requests == 1000
    lines = [r for r in caplog.records if r.name == "logrelay.catcher" and r.levelno >= logging.INFO]
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines[:3]]
