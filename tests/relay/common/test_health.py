"""The health endpoint over a real loopback socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from relay.common.addresses import ListenAddress
from relay.common.counters import CatcherStats
from relay.common.health import MAX_CONNECTIONS, READ_DEADLINE, HealthServer, Readiness, all_ready
from relay.common.metrics import CatcherMetrics, new_registry
from relay.common.signals import StartError


async def request(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[HealthServer, list[Readiness]]]:
    state = [Readiness(True, "ready")]
    stats = CatcherStats(records_received=7, connections=2)
    registry = new_registry()
    CatcherMetrics(registry, stats, lambda: state[0].ready)
    server = HealthServer(ListenAddress("127.0.0.1", 0), lambda: state[0], registry)
    await server.start()
    yield server, state
    await server.close()


async def test_livez_readyz_and_metrics(endpoint: tuple[HealthServer, list[Readiness]]) -> None:
    server, state = endpoint
    assert server.port
    assert await request(server.port, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n") == (200, b"ok\n")
    assert await request(server.port, b"GET /readyz HTTP/1.0\r\n\r\n") == (200, b"ready\n")
    state[0] = Readiness(False, "Redis unreachable")
    assert await request(server.port, b"GET /readyz HTTP/1.0\r\n\r\n") == (503, b"Redis unreachable\n")
    status, body = await request(server.port, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert status == 200
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if not sample.labels
    }
    assert samples["logrelay_catcher_records_received_total"] == 7
    assert samples["logrelay_catcher_connections"] == 2
    assert samples["logrelay_catcher_ready"] == 0


async def test_other_requests_get_clear_statuses(endpoint: tuple[HealthServer, list[Readiness]]) -> None:
    server, _ = endpoint
    assert server.port
    assert (await request(server.port, b"GET /nope HTTP/1.0\r\n\r\n"))[0] == 404
    assert (await request(server.port, b"POST /readyz HTTP/1.0\r\n\r\n"))[0] == 405
    status, body = await request(server.port, b"HEAD /livez HTTP/1.0\r\n\r\n")
    assert (status, body) == (200, b"")


async def test_an_oversized_request_head_is_dropped_not_buffered(
    endpoint: tuple[HealthServer, list[Readiness]],
) -> None:
    server, _ = endpoint
    assert server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /" + b"a" * 20_000 + b" HTTP/1.0\r\n\r\n")
    await writer.drain()
    assert await reader.read() == b""  # closed without an answer
    writer.close()
    await writer.wait_closed()


async def test_an_address_in_use_is_named_in_one_line(endpoint: tuple[HealthServer, list[Readiness]]) -> None:
    taken, _ = endpoint
    second = HealthServer(ListenAddress("127.0.0.1", taken.port or 0), lambda: Readiness(True, "ready"), new_registry())
    with pytest.raises(
        StartError, match=rf"^cannot listen on 127\.0\.0\.1:{taken.port} \(--health-listen\): Address already in use$"
    ):
        await second.start()


def test_all_ready_is_ready_when_every_part_is_and_names_the_first_that_is_not() -> None:
    parts = {"catcher": lambda: Readiness(True, "ready"), "consumer": lambda: Readiness(False, "stopping")}
    assert all_ready(parts)() == Readiness(False, "consumer: stopping")
    parts["consumer"] = lambda: Readiness(True, "ready")
    assert all_ready(parts)() == Readiness(True, "ready")


async def test_a_readiness_or_scrape_that_fails_answers_500_not_a_dropped_connection() -> None:
    def broken() -> Readiness:
        raise RuntimeError("a bug in a readiness callable")

    def unreadable() -> float | None:
        raise RuntimeError("a bug in a gauge's reader")

    registry = new_registry()
    CatcherMetrics(registry, CatcherStats(), unreadable)  # type: ignore[arg-type]
    server = HealthServer(ListenAddress("127.0.0.1", 0), broken, registry)
    await server.start()
    try:
        assert server.port
        assert (await request(server.port, b"GET /readyz HTTP/1.0\r\n\r\n"))[0] == 500
        assert (await request(server.port, b"GET /metrics HTTP/1.0\r\n\r\n"))[0] == 500
        assert await request(server.port, b"GET /livez HTTP/1.0\r\n\r\n") == (200, b"ok\n")
    finally:
        await server.close()


async def test_connections_beyond_the_limit_are_closed_at_once_and_the_endpoint_still_answers(
    endpoint: tuple[HealthServer, list[Readiness]],
) -> None:
    server, _ = endpoint
    assert server.port
    # Silent connections (a slow loris, a flood): each would hold a socket for the read deadline.
    silent = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(MAX_CONNECTIONS)]
    try:
        extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", server.port)
        # Beyond the limit: closed without waiting for the read deadline.
        assert await asyncio.wait_for(extra_reader.read(), READ_DEADLINE / 2) == b""
        extra_writer.close()
        assert server.open_connections == MAX_CONNECTIONS
    finally:
        for _, writer in silent:
            writer.close()
    for _ in range(500):  # the silent clients are gone: their slots come back
        if server.open_connections == 0:
            break
        await asyncio.sleep(0.01)
    assert server.open_connections == 0
    assert await request(server.port, b"GET /livez HTTP/1.0\r\n\r\n") == (200, b"ok\n")
