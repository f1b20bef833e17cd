"""A stock ``logging.handlers.SocketHandler`` against a real catcher: our own limits never cost it a record.

A quiet connection is not closed (``--idle-timeout`` is opt-in; what it costs
when turned on is shown too); a record over ``--max-frame-bytes`` is a dead
letter and the connection goes on; only a frame over ``--max-skip-bytes``
closes it.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from relay.common.stream import StreamKeys
from tests.support.clients import read_stream, wait_for_entries
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess
from tests.support.realredis import RedisServer, free_port

pytestmark = pytest.mark.integration

CatcherFactory = Callable[..., CatcherProcess]
DEAD_LETTERS = StreamKeys().dead_letters
# Longer than the short frame-timeout of these tests: the catcher's sweep runs several times meanwhile.
QUIET_SECONDS = 3.0


@pytest.fixture
def handler() -> Iterator[Callable[[int], logging.handlers.SocketHandler]]:
    """Stock SocketHandlers to 127.0.0.1:PORT, closed at the end."""
    made: list[logging.handlers.SocketHandler] = []

    def make(port: int) -> logging.handlers.SocketHandler:
        made.append(logging.handlers.SocketHandler("127.0.0.1", port))
        return made[-1]

    yield make
    for each in made:
        each.close()


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("stock", logging.INFO, __file__, 1, msg, None, None)


def messages(client: redis.Redis) -> list[str]:
    return [json.loads(fields[b"record"])["msg"] for _, fields in read_stream(client)]


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the catcher closed (FIN or RST) the connection ``sock`` is the client end of; reads nothing."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False  # open, nothing to read: what a live catcher connection looks like (it never writes)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return True


def quiet(seconds: float) -> None:
    """The client says nothing for ``seconds``: the scenario itself, not a wait for a condition."""
    time.sleep(seconds)


def test_a_quiet_stock_handler_is_not_closed_by_default(
    catcher_factory: CatcherFactory, redis_server: RedisServer, handler: Callable[[int], logging.handlers.SocketHandler]
) -> None:
    catcher = catcher_factory(redis_server.url, "--frame-timeout", "0.5")
    sender = handler(catcher.port)
    client = redis_server.client()

    sender.handle(record("before the quiet"))
    wait_for_entries(client, 1)
    sock = sender.sock
    assert sock is not None
    quiet(QUIET_SECONDS)
    assert not closed_by_peer(sock)
    for n in range(3):
        sender.handle(record(f"after the quiet {n}"))

    wait_for_entries(client, 4)
    assert sender.sock is sock  # the same connection all along
    assert messages(client) == ["before the quiet", "after the quiet 0", "after the quiet 1", "after the quiet 2"]
    assert catcher.stop() == 0
    assert catcher.final_stats()["connections_idle_closed"] == 0


def test_the_effective_default_idle_timeout_is_never() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "relay", "config", "show", "catch"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    [line] = [line for line in shown.stdout.splitlines() if line.startswith("--idle-timeout")]
    assert line.split()[1:] == ["0.0", "default"]


def test_an_opted_in_idle_timeout_closes_a_quiet_stock_handler_which_loses_what_it_sends_next(
    catcher_factory: CatcherFactory, redis_server: RedisServer, handler: Callable[[int], logging.handlers.SocketHandler]
) -> None:
    catcher = catcher_factory(redis_server.url, "--idle-timeout", "1")
    sender = handler(catcher.port)
    client = redis_server.client()

    sender.handle(record("before the quiet"))
    wait_for_entries(client, 1)
    sock = sender.sock
    assert sock is not None
    wait_until(lambda: closed_by_peer(sock), timeout=30, what="the catcher closing the quiet connection")
    sent = [f"after the close {n}" for n in range(4)]
    for msg in sent:
        sender.handle(record(msg))
    # The handler reconnects within these four: the last one at least comes through.
    wait_until(lambda: messages(client)[-1:] == [sent[-1]], timeout=30, what="the last record after the close")

    arrived = messages(client)
    assert arrived[0] == "before the quiet"
    # The stock handler cannot see the close: what it wrote into the closed connection is gone.
    assert sent[0] not in arrived
    assert catcher.stop() == 0
    assert catcher.final_stats()["connections_idle_closed"] == 1


def test_a_2mb_record_is_a_dead_letter_and_the_connection_goes_on(
    catcher_factory: CatcherFactory, redis_server: RedisServer, handler: Callable[[int], logging.handlers.SocketHandler]
) -> None:
    catcher = catcher_factory(redis_server.url)  # the default limits: 1 MiB frames, 64 MiB skip cap
    sender = handler(catcher.port)
    client = redis_server.client()
    big = record("big " + "x" * 2_000_000)
    expected_frame = sender.makePickle(big)

    sender.handle(record("before"))
    wait_for_entries(client, 1)
    sock = sender.sock
    sender.handle(big)
    for n in range(3):
        sender.handle(record(f"after {n}"))

    wait_for_entries(client, 4)
    assert messages(client) == ["before", "after 0", "after 1", "after 2"]
    [(_, letter)] = wait_for_entries(client, 1, key=DEAD_LETTERS)
    assert letter[b"raw"] == expected_frame[4:260]
    assert f"frame of {len(expected_frame) - 4} bytes exceeds max-frame-bytes (1048576)".encode() in letter[b"reason"]
    assert sender.sock is sock
    assert not closed_by_peer(sock)
    assert catcher.stop() == 0
    stats = catcher.final_stats()
    assert (stats["bad_frames"], stats["oversize_frames"], stats["partial_frames_dropped"]) == (1, 0, 0)


def test_a_frame_over_the_skip_cap_closes_the_connection(
    catcher_factory: CatcherFactory, redis_server: RedisServer, handler: Callable[[int], logging.handlers.SocketHandler]
) -> None:
    catcher = catcher_factory(redis_server.url, "--max-frame-bytes", "64KiB", "--max-skip-bytes", "1MiB")
    sender = handler(catcher.port)
    client = redis_server.client()

    sender.handle(record("before"))
    wait_for_entries(client, 1)
    sock = sender.sock
    assert sock is not None
    sender.handle(record("too big " + "x" * 2_000_000))

    wait_until(lambda: closed_by_peer(sock), timeout=30, what="the catcher closing the connection")
    assert "exceeds the limit of 1048576 bytes (max-skip-bytes)" in catcher.log
    assert messages(client) == ["before"]
    assert catcher.stop() == 0
    assert catcher.final_stats()["oversize_frames"] == 1


def test_a_skip_cap_below_the_frame_limit_is_a_one_line_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relay", "catch", "--max-frame-bytes", "2MiB", "--max-skip-bytes", "1MiB"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "max-skip-bytes (1048576) must be at least max-frame-bytes (2097152)" in result.stderr
    assert "Traceback" not in result.stderr


# The stock HTTPHandler never closes its connection: the socket goes when emit() drops it (a ResourceWarning).
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_http_handler_opens_a_connection_per_record_so_no_idle_close_can_cost_it_one(
    catcher_factory: CatcherFactory, redis_server: RedisServer
) -> None:
    http_port = free_port()
    catcher = catcher_factory(redis_server.url, "--listen-http", f"127.0.0.1:{http_port}", "--idle-timeout", "1")
    sender = logging.handlers.HTTPHandler(f"127.0.0.1:{http_port}", "/", method="POST")
    client = redis_server.client()

    sender.handle(record("first"))
    quiet(QUIET_SECONDS)  # past the opted-in idle timeout
    sender.handle(record("second"))
    sender.handle(record("third"))

    wait_for_entries(client, 3)
    assert messages(client) == ["first", "second", "third"]
    assert catcher.stop() == 0
    stats = catcher.final_stats()
    # One connection per record (beside the start-up check's to --listen), each closed by the handler itself.
    assert (stats["connections_accepted"], stats["connections_idle_closed"]) == (1 + 3, 0)
