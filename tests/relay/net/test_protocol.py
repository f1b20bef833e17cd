"""CatcherProtocol and ConnectionRegistry driven through asyncio's callbacks, no sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import logging.handlers
import socket
import struct
from typing import Any

import fakeredis
import pytest

from relay.common.counters import CatcherStats
from relay.common.stream import StreamKeys
from relay.decode.frames import DecodeLimits
from relay.net.protocol import CatcherProtocol, format_peer
from relay.net.registry import ConnectionRegistry
from relay.publish.publisher import StreamPublisher
from relay.settings import CatcherSettings
from tests.support.polling import async_wait_until


class FakeTransport(asyncio.Transport):
    """Records what the protocol asked of its transport."""

    def __init__(self, peer: Any = ("192.0.2.7", 40000), sock: socket.socket | None = None) -> None:
        super().__init__()
        self.peer = peer
        self.sock = sock
        self.reading = True
        self.closed = False
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self.peer, "socket": self.sock}.get(name) or default

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def frame(msg: str, **extra: Any) -> bytes:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return logging.handlers.SocketHandler("unused", 0).makePickle(record)


@pytest.fixture
async def parts() -> Any:
    client = fakeredis.FakeAsyncRedis()
    settings = CatcherSettings(
        keys=StreamKeys("logs"),
        limits=DecodeLimits(max_frame_bytes=4096, max_decoded_bytes=4096),
        buffer_bytes=8192,
        max_connections=2,
    )
    stats = CatcherStats()
    registry = ConnectionRegistry(settings.max_connections, stats, max_partial_bytes=settings.max_partial_bytes)
    publisher = StreamPublisher(
        client, settings.keys, catcher_id="unit", buffer_bytes=settings.buffer_bytes, stats=stats, flow=registry
    )
    yield settings, registry, publisher, client
    await client.aclose()


def connect(parts: Any, peer: Any = ("192.0.2.7", 40000)) -> tuple[CatcherProtocol, FakeTransport]:
    settings, registry, publisher, _ = parts
    protocol = CatcherProtocol(settings, registry, publisher)
    transport = FakeTransport(peer)
    protocol.connection_made(transport)
    return protocol, transport


def deliver(protocol: CatcherProtocol, data: bytes) -> None:
    """What asyncio does for a BufferedProtocol: fill the buffer it gives, then say how much."""
    buffer = protocol.get_buffer(-1)
    buffer[: len(data)] = data
    protocol.buffer_updated(len(data))


async def test_connections_reading_into_the_shared_buffer_keep_their_own_frames(parts: Any) -> None:
    _, _, publisher, client = parts
    first, _ = connect(parts, ("192.0.2.7", 1))
    second, _ = connect(parts, ("192.0.2.8", 2))
    streams = {
        first: b"".join(frame(f"a{n}", n=n) for n in range(4)),
        second: b"".join(frame(f"b{n}", n=n) for n in range(4)),
    }
    assert first.get_buffer(-1) is second.get_buffer(-1)  # one buffer for all
    # Reads alternate between the connections and end mid-frame.
    for start in range(0, max(map(len, streams.values())), 50):
        for protocol, data in streams.items():
            if data[start : start + 50]:
                deliver(protocol, data[start : start + 50])
    task = asyncio.create_task(publisher.run())
    await async_wait_until(lambda: publisher.buffered == 0, what="published")
    publisher.close()
    await task
    by_client: dict[bytes, list[str]] = {}
    for _, fields in await client.xrange("logs"):
        by_client.setdefault(fields[b"client"], []).append(json.loads(fields[b"record"])["msg"])
    assert by_client == {b"192.0.2.7:1": ["a0", "a1", "a2", "a3"], b"192.0.2.8:2": ["b0", "b1", "b2", "b3"]}


async def test_frames_split_across_reads_reach_the_stream_in_order(parts: Any) -> None:
    _, _, publisher, client = parts
    protocol, _ = connect(parts)
    data = b"".join(frame(f"m{n}", n=n) for n in range(5))
    for start in range(0, len(data), 7):
        protocol.data_received(data[start : start + 7])
    assert publisher.buffered == 5
    task = asyncio.create_task(publisher.run())
    await async_wait_until(lambda: publisher.buffered == 0, what="published")
    publisher.close()
    await task
    entries = await client.xrange("logs")
    assert [json.loads(f[b"record"])["n"] for _, f in entries] == [0, 1, 2, 3, 4]
    assert {f[b"client"] for _, f in entries} == {b"192.0.2.7:40000"}


async def test_an_accepted_connection_gets_tcp_keepalive(parts: Any) -> None:
    # Nothing closes a quiet connection by default: keepalive is what finds a peer that is gone.
    settings, registry, publisher, _ = parts
    with socket.create_server(("127.0.0.1", 0)) as listening, socket.create_connection(listening.getsockname()):
        accepted, peer = listening.accept()
        with accepted:
            transport = FakeTransport(peer, accepted)
            CatcherProtocol(settings, registry, publisher).connection_made(transport)
            assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


async def test_header_over_the_skip_cap_aborts_the_connection(parts: Any) -> None:
    settings, registry, publisher, _ = parts
    protocol, transport = connect(parts)
    protocol.data_received(frame("fine"))
    protocol.data_received(struct.pack(">L", settings.limits.max_skip_bytes + 1))
    assert transport.aborted
    assert registry.stats.oversize_frames == 1
    assert publisher.buffered == 1  # the good frame before it is kept


async def test_oversize_frame_is_discarded_as_it_arrives_and_the_connection_goes_on(parts: Any) -> None:
    settings, registry, publisher, client = parts
    protocol, transport = connect(parts)
    big = frame("big " + "x" * 3 * settings.limits.max_frame_bytes)
    budget = registry.partial_frames
    deliver(protocol, frame("before") + big[:100])
    # Inside the oversize frame: the frame timeout runs, the budget counts its kept first bytes, not its size.
    for start in range(100, len(big), 1000):
        deliver(protocol, big[start : start + 1000])
        if start + 1000 < len(big):
            assert protocol.frame_started is not None
            assert not protocol.at_frame_boundary
            assert 0 < budget.total <= 4 + 256
    deliver(protocol, frame("after"))
    assert protocol.at_frame_boundary
    assert budget.total == 0
    assert not transport.aborted
    assert not transport.closed
    assert (registry.stats.bad_frames, registry.stats.oversize_frames) == (1, 0)
    task = asyncio.create_task(publisher.run())
    await async_wait_until(lambda: publisher.buffered == 0, what="published")
    publisher.close()
    await task
    assert [json.loads(f[b"record"])["msg"] for _, f in await client.xrange("logs")] == ["before", "after"]
    ((_, dead),) = await client.xrange("{logs}:dead")
    assert dead[b"raw"] == big[4:260]
    assert f"frame of {len(big) - 4} bytes exceeds max-frame-bytes (4096)".encode() in dead[b"reason"]


async def test_bad_frame_is_dead_lettered_between_good_ones(parts: Any) -> None:
    _, registry, publisher, client = parts
    protocol, transport = connect(parts)
    junk = b"\x80\x02not a pickle"
    protocol.data_received(frame("a") + struct.pack(">L", len(junk)) + junk + frame("b"))
    assert not transport.aborted
    assert registry.stats.bad_frames == 1
    task = asyncio.create_task(publisher.run())
    await async_wait_until(lambda: publisher.buffered == 0, what="published")
    publisher.close()
    await task
    assert [json.loads(f[b"record"])["msg"] for _, f in await client.xrange("logs")] == ["a", "b"]
    ((_, dead),) = await client.xrange("{logs}:dead")
    assert dead[b"raw"] == junk


async def test_full_buffer_pauses_every_connection_and_new_ones_start_paused(parts: Any) -> None:
    _, registry, publisher, _ = parts
    first, first_transport = connect(parts)
    while not publisher.paused:
        first.data_received(frame("x" * 500))
    assert registry.reading_paused
    assert not first_transport.reading
    _, second_transport = connect(parts, ("192.0.2.8", 1))
    assert not second_transport.reading
    task = asyncio.create_task(publisher.run())
    await async_wait_until(lambda: not publisher.paused, what="resume")
    assert first_transport.reading
    assert second_transport.reading
    publisher.close()
    await task


async def test_connections_over_the_limit_are_aborted(parts: Any) -> None:
    _, registry, _, _ = parts
    connect(parts)
    connect(parts)
    third, transport = connect(parts)
    assert transport.aborted
    assert registry.stats.connections_refused == 1
    assert len(registry.connections) == 2
    third.connection_lost(None)  # asyncio still reports the loss; it must be harmless
    assert len(registry.connections) == 2


async def test_a_partial_frame_at_disconnect_is_counted(parts: Any) -> None:
    _, registry, _, _ = parts
    protocol, _ = connect(parts)
    protocol.data_received(frame("whole") + frame("half")[:20])
    protocol.connection_lost(None)
    assert registry.stats.partial_frames_dropped == 1
    assert registry.stats.connections == 0


async def test_a_connection_that_never_sends_closes_cleanly_and_one_that_sends_late_is_served(
    parts: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Idle connections hold no decoder until their first bytes: nothing about them may change for it.
    _, registry, publisher, client = parts
    idle, _ = connect(parts, ("192.0.2.8", 41000))
    late, _ = connect(parts, ("192.0.2.9", 42000))
    assert idle.at_frame_boundary
    assert idle.client == "192.0.2.8:41000"
    with caplog.at_level(logging.INFO, logger="logrelay.catcher"):
        idle.connection_lost(None)
    assert registry.stats.partial_frames_dropped == 0
    assert "closed inside a frame" not in caplog.text
    late.data_received(frame("after a silence")[:10])
    assert not late.at_frame_boundary
    late.data_received(frame("after a silence")[10:])
    assert late.at_frame_boundary
    task = asyncio.create_task(publisher.run())
    await async_wait_until(lambda: publisher.buffered == 0, what="published")
    publisher.close()
    await task
    (entry,) = await client.xrange("logs")
    assert entry[1][b"client"] == b"192.0.2.9:42000"
    assert json.loads(entry[1][b"record"])["msg"] == "after a silence"


@pytest.mark.parametrize(
    ("peer", "text"),
    [(("10.0.0.1", 5), "10.0.0.1:5"), (("::1", 5, 0, 0), "[::1]:5"), ("/run/sock", "/run/sock"), (None, "unknown")],
)
def test_peer_formatting(peer: Any, text: str) -> None:
    assert format_peer(peer) == text


def proxy_v1(source: str, port: int) -> bytes:
    return f"PROXY TCP4 {source} 10.0.0.9 {port} 9020\r\n".encode()


async def test_with_proxy_protocol_entries_carry_the_original_client(parts: Any) -> None:
    settings, registry, publisher, client = parts
    proxied = dataclasses.replace(settings, proxy_protocol=True)
    protocol = CatcherProtocol(proxied, registry, publisher)
    transport = FakeTransport(("127.0.0.1", 50000))  # the balancer
    protocol.connection_made(transport)
    data = proxy_v1("203.0.113.5", 41000) + frame("through the balancer")
    for start in range(0, len(data), 5):  # header and frame split anywhere
        protocol.data_received(data[start : start + 5])
    task = asyncio.create_task(publisher.run())
    await async_wait_until(lambda: publisher.buffered == 0, what="published")
    publisher.close()
    await task
    ((_, entry),) = await client.xrange("logs")
    assert entry[b"client"] == b"203.0.113.5:41000"
    assert not transport.aborted


async def test_with_proxy_protocol_a_connection_without_header_is_refused(parts: Any) -> None:
    settings, registry, publisher, _ = parts
    proxied = dataclasses.replace(settings, proxy_protocol=True)
    protocol = CatcherProtocol(proxied, registry, publisher)
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.data_received(frame("no header first"))
    assert transport.aborted
    assert registry.stats.proxy_header_errors == 1
    assert publisher.buffered == 0


async def test_without_proxy_protocol_a_proxy_header_is_just_a_bad_frame(parts: Any) -> None:
    _, registry, publisher, _ = parts
    protocol, transport = connect(parts)
    protocol.data_received(proxy_v1("203.0.113.5", 41000))
    # "PROX" read as a length header: far over the 4 KiB limit of this fixture.
    assert transport.aborted
    assert registry.stats.oversize_frames == 1
    assert publisher.buffered == 0


async def test_asking_to_leave_half_closes_and_keeps_reading(parts: Any) -> None:
    _, _, publisher, _ = parts
    protocol, transport = connect(parts)
    eofs: list[bool] = []
    transport.can_write_eof = lambda: True  # type: ignore[method-assign]
    transport.write_eof = lambda: eofs.append(True)  # type: ignore[method-assign]
    protocol.ask_to_leave()
    assert eofs == [True]
    protocol.data_received(frame("sent after our FIN"))
    assert publisher.buffered == 1
    assert not transport.closed


async def test_connections_per_client_address_are_limited(parts: Any) -> None:
    settings, _, publisher, _ = parts
    registry = ConnectionRegistry(10, CatcherStats(), max_per_client=2)

    def open_from(host: str) -> FakeTransport:
        transport = FakeTransport((host, 1000))
        CatcherProtocol(settings, registry, publisher).connection_made(transport)
        return transport

    assert not open_from("198.51.100.1").aborted
    assert not open_from("198.51.100.1").aborted
    assert open_from("198.51.100.1").aborted  # a third from the same address
    assert not open_from("198.51.100.2").aborted  # another client is not affected
    assert registry.stats.connections_refused == 1


async def test_the_per_client_limit_counts_the_address_from_the_proxy_header(parts: Any) -> None:
    settings, _, publisher, _ = parts
    proxied = dataclasses.replace(settings, proxy_protocol=True)
    registry = ConnectionRegistry(10, CatcherStats(), max_per_client=1)
    transports = []
    for client_port in (1, 2):
        protocol = CatcherProtocol(proxied, registry, publisher)
        transport = FakeTransport(("127.0.0.1", 60000 + client_port))  # all from the balancer
        protocol.connection_made(transport)
        protocol.data_received(proxy_v1(f"203.0.113.{client_port}", 5000))
        transports.append(transport)
    assert not any(t.aborted for t in transports)  # two clients behind one balancer address
    third = CatcherProtocol(proxied, registry, publisher)
    transport = FakeTransport(("127.0.0.1", 60003))
    third.connection_made(transport)
    third.data_received(proxy_v1("203.0.113.1", 5001))  # client 1 again
    assert transport.aborted


async def test_a_started_frame_is_timed_until_it_completes(parts: Any) -> None:
    protocol, _ = connect(parts)
    assert protocol.frame_started is None
    data = frame("slow")
    protocol.data_received(data[:10])
    started = protocol.frame_started
    assert started is not None
    protocol.data_received(data[10:20])
    assert protocol.frame_started == started  # still the same frame
    protocol.data_received(data[20:])
    assert protocol.frame_started is None


# --------------------------------------------------------------------------- the partial-frame budget

FRAME_LIMIT = 256 * 1024


@pytest.fixture
async def budgeted() -> Any:
    """Connections sharing a partial-frame budget with room for three large frames (896 KiB of 1 MiB)."""
    client = fakeredis.FakeAsyncRedis()
    settings = CatcherSettings(
        keys=StreamKeys("logs"),
        limits=DecodeLimits(max_frame_bytes=FRAME_LIMIT, max_decoded_bytes=4 * FRAME_LIMIT),
        max_partial_bytes=1024 * 1024,
        buffer_bytes=16 * FRAME_LIMIT,
        max_connections=10,
    )
    stats = CatcherStats()
    registry = ConnectionRegistry(10, stats, max_partial_bytes=settings.max_partial_bytes)
    publisher = StreamPublisher(
        client, settings.keys, catcher_id="unit", buffer_bytes=settings.buffer_bytes, stats=stats, flow=registry
    )
    yield settings, registry, publisher, client
    await client.aclose()


def large_frame(msg: str) -> bytes:
    """A frame of FRAME_LIMIT bytes (its header aside)."""
    body = frame(msg, pad="x" * FRAME_LIMIT)[4:]
    record = logging.LogRecord("t", logging.INFO, __file__, 1, msg, None, None)
    record.__dict__["pad"] = "x" * (FRAME_LIMIT - (len(body) - FRAME_LIMIT))
    data = logging.handlers.SocketHandler("unused", 0).makePickle(record)
    assert len(data) - 4 == FRAME_LIMIT
    return data


async def test_a_large_frame_beyond_the_budget_waits_and_reads_on_when_another_completes(budgeted: Any) -> None:
    _, registry, publisher, client = budgeted
    frames = [large_frame(f"large-{n}") for n in range(4)]
    connections = [connect(budgeted, ("192.0.2.9", n)) for n in range(4)]
    for (protocol, _), data in zip(connections, frames, strict=True):
        deliver(protocol, data[:1000])
    assert [transport.reading for _, transport in connections] == [True, True, True, False]
    assert registry.stats.partial_frame_waits == 1
    assert registry.partial_frames.reserved == 3 * (FRAME_LIMIT + 4)

    # The first frame completes: its room goes to the one waiting.
    first, _ = connections[0]
    for start in range(1000, len(frames[0]), 60_000):
        deliver(first, frames[0][start : start + 60_000])
    assert connections[3][1].reading
    # ... which then reads its frame to the end.
    fourth, _ = connections[3]
    for start in range(1000, len(frames[3]), 60_000):
        deliver(fourth, frames[3][start : start + 60_000])
    task = asyncio.create_task(publisher.run())
    await async_wait_until(lambda: publisher.buffered == 0, what="published")
    publisher.close()
    await task
    assert [json.loads(fields[b"record"])["msg"] for _, fields in await client.xrange("logs")] == [
        "large-0",
        "large-3",
    ]


async def test_when_the_budget_is_full_reads_shrink_to_a_header_and_small_frames_still_pass(budgeted: Any) -> None:
    _, registry, publisher, client = budgeted
    holders = [connect(budgeted, ("192.0.2.9", n)) for n in range(3)]
    for protocol, _ in holders:
        deliver(protocol, large_frame("held")[:1000])
    small, small_transport = connect(budgeted, ("192.0.2.10", 1))
    # Large frames took their seven eighths; the small frame fits in the rest.
    deliver(small, frame("small and honest"))
    assert small_transport.reading
    stuffing = [connect(budgeted, ("192.0.2.11", n)) for n in range(4)]
    for protocol, _ in stuffing:
        deliver(protocol, struct.pack(">L", 60_000) + b"x" * 10)
    assert registry.partial_frames.limit - registry.partial_frames.total < 64 * 1024
    assert len(small.get_buffer(-1)) < 64 * 1024
    task = asyncio.create_task(publisher.run())
    await async_wait_until(lambda: publisher.buffered == 0, what="published")
    publisher.close()
    await task
    assert [json.loads(f[b"record"])["msg"] for _, f in await client.xrange("logs")] == ["small and honest"]


async def test_a_closed_connection_gives_its_reservation_back(budgeted: Any) -> None:
    _, registry, _, _ = budgeted
    connections = [connect(budgeted, ("192.0.2.9", n)) for n in range(4)]
    for protocol, _ in connections:
        deliver(protocol, large_frame("held")[:1000])
    assert not connections[3][1].reading
    connections[0][0].connection_lost(None)
    assert connections[3][1].reading
    for protocol, _ in connections[1:]:
        protocol.connection_lost(None)
    assert registry.partial_frames.total == 0
    assert registry.stats.partial_bytes == 0


async def test_resuming_after_backpressure_keeps_a_budget_waiter_paused(budgeted: Any) -> None:
    _, registry, _, _ = budgeted
    connections = [connect(budgeted, ("192.0.2.9", n)) for n in range(4)]
    for protocol, _ in connections:
        deliver(protocol, large_frame("held")[:1000])
    registry.pause_reading()
    registry.resume_reading()
    assert [transport.reading for _, transport in connections] == [True, True, True, False]
    assert connections[3][0].paused  # not the client's delay: frame-timeout does not count it
