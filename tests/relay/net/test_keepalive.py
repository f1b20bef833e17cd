"""enable_keepalive on real sockets: what the kernel reports afterwards."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from relay.net.keepalive import KEEPALIVE_COUNT, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, enable_keepalive


@pytest.fixture
def accepted() -> Iterator[socket.socket]:
    """The server end of a loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        client = socket.create_connection(listening.getsockname())
        server, _ = listening.accept()
        yield server
        server.close()
        client.close()


def keepalive_of(sock: socket.socket) -> tuple[int, int, int, int]:
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    )


def test_an_accepted_connection_is_probed_after_a_minute_and_dropped_after_four_misses(
    accepted: socket.socket,
) -> None:
    assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0  # the kernel's default: no probes

    enable_keepalive(accepted)

    assert keepalive_of(accepted) == (1, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
    # A dead peer is found within about two minutes, before the 4-minute idle timeout of common balancers.
    assert KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT <= 240


def test_what_is_not_a_tcp_socket_is_left_alone() -> None:
    left, right = socket.socketpair()
    with left, right:
        enable_keepalive(left)
        enable_keepalive(None)  # a transport that has no socket to give (a test's fake)
        assert left.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


def test_a_closed_socket_is_no_error(accepted: socket.socket) -> None:
    accepted.close()
    enable_keepalive(accepted)
