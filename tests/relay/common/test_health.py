"""The health endpoint over a real loopback socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from relay.common import speedups
from relay.common.addresses import ListenAddress
from relay.common.counters import CatcherStats
from relay.common.health import HealthServer, Readiness, render_metrics


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
    server = HealthServer(ListenAddress("127.0.0.1", 0), lambda: state[0], stats)
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
    assert b"logrelay_catcher_records_received_total 7\n" in body
    assert b"logrelay_catcher_connections 2\n" in body
    assert b"logrelay_catcher_ready 0\n" in body


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


def test_metrics_name_every_counter_once() -> None:
    text = render_metrics(CatcherStats(), ready=True)
    names = [line.split()[0] for line in text.splitlines() if not line.startswith("#")]
    catcher = [name for name in names if name.startswith("logrelay_catcher_")]
    assert len(names) == len(set(names))
    assert len(catcher) == len(CatcherStats().as_dict()) + 1


def test_metrics_say_which_speedups_run() -> None:
    # The decoder and the packer are loaded wherever the catcher runs.
    import relay.decode.fast_path
    import relay.publish.packing  # noqa: F401

    text = render_metrics(CatcherStats(), ready=True)
    reported = {
        line.split('"')[1]: line.rsplit(" ", 1)[1]
        for line in text.splitlines()
        if line.startswith("logrelay_speedup_in_use{")
    }
    assert reported == {name: "1" if how == "c" else "0" for name, how in speedups.IN_USE.items()}
    assert {"relay.decode._fast_path", "relay.publish._packing"} <= set(reported)
