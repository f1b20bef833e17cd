"""``--listen-datagram``: the stdlib's DatagramHandler into the stream, and what UDP cannot keep is counted."""

from __future__ import annotations

import json
import pickle
import signal
import socket
import struct
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.clients import read_stream, wait_for_entries
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess
from tests.support.realredis import RedisServer, free_port

pytestmark = pytest.mark.integration

CatcherFactory = Callable[..., CatcherProcess]

SENDER = """
import datetime, decimal, logging, logging.handlers, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
handler = logging.handlers.DatagramHandler("127.0.0.1", port)
log = logging.getLogger("dgram.app")
log.addHandler(handler)
log.setLevel(logging.INFO)
for n in range(count):
    log.info("record %d", n, extra={"n": n, "when": datetime.date(2026, 12, 7), "amount": decimal.Decimal("1.50")})
handler.close()
"""


def datagram_catcher(
    catcher_factory: CatcherFactory, redis_server: RedisServer, *args: str
) -> tuple[CatcherProcess, int]:
    port = free_port()
    catcher = catcher_factory(redis_server.url, "--listen-datagram", f"127.0.0.1:{port}", *args)
    wait_until(lambda: "DatagramHandler (UDP)" in catcher.log, timeout=15, what="the datagram input listening")
    return catcher, port


def metric(health_port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{health_port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_datagramhandler_records_each_once_in_order_with_their_extras(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    _, port = datagram_catcher(catcher_factory, redis_server)
    count = 300  # few enough that loopback keeps every datagram
    subprocess.run([sys.executable, "-c", SENDER, str(port), str(count)], check=True, timeout=60)
    client = redis_server.client()
    entries = wait_for_entries(client, count)
    got = [json.loads(fields[b"record"]) for _, fields in entries]
    assert [record["msg"] for record in got] == [f"record {n}" for n in range(count)]
    assert [record["n"] for record in got] == list(range(count))
    assert {(record["when"], record["amount"], record["name"]) for record in got} == {
        ("2026-12-07", "1.50", "dgram.app")
    }
    assert {fields[b"client"].split(b"://")[0] for _, fields in entries} == {b"datagram"}


def test_a_hostile_pickle_is_a_dead_letter_and_runs_nothing(
    redis_server: RedisServer, catcher_factory: CatcherFactory, tmp_path: Path
) -> None:
    _, port = datagram_catcher(catcher_factory, redis_server)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (__import__("os").system, (f"touch {marker}",))

    payload = pickle.dumps({"msg": Evil()}, 1)
    good = pickle.dumps({"msg": "fine", "levelno": 20, "name": "x"}, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(struct.pack(">I", len(payload)) + payload, ("127.0.0.1", port))
        sock.sendto(b"\x00\x00\x00\x09short", ("127.0.0.1", port))  # the header says more than came
        sock.sendto(struct.pack(">I", len(good)) + good, ("127.0.0.1", port))
    client = redis_server.client()
    wait_until(lambda: len(read_stream(client)) == 1, timeout=30, what="the good record")
    letters = wait_for_entries(client, 2, "{logrelay}:dead")
    reasons = [fields[b"reason"].decode() for _, fields in letters]
    assert "posix.system" in reasons[0]
    assert "frame header says 9" in reasons[1]
    assert not marker.exists()


def test_datagrams_the_kernel_drops_while_the_catcher_cannot_read_are_counted(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    health = free_port()
    catcher, port = datagram_catcher(catcher_factory, redis_server, "--health-listen", f"127.0.0.1:{health}")
    record = pickle.dumps({"msg": "x" * 1000, "levelno": 20, "name": "flood"}, 1)
    datagram = struct.pack(">I", len(record)) + record
    sent = 20_000  # ~20 MB: far beyond any receive buffer this machine grants
    catcher.signal(signal.SIGSTOP)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(sent):
                sock.sendto(datagram, ("127.0.0.1", port))
    finally:
        catcher.signal(signal.SIGCONT)
    client = redis_server.client()

    def accounted() -> tuple[int, float] | None:
        published = client.xlen("logrelay")
        dropped = metric(health, "logrelay_catcher_datagrams_dropped_total")
        return (published, dropped) if published + dropped == sent else None

    published, dropped = wait_until(accounted, timeout=60, what="every datagram published or counted as dropped")
    assert dropped > 0
    assert published > 0
    assert metric(health, "logrelay_catcher_datagrams_received_total") == published
    assert "the kernel dropped datagrams (receive buffer full)" in catcher.log


def test_senders_outside_allow_are_dropped_and_counted(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    health = free_port()
    _, port = datagram_catcher(
        catcher_factory, redis_server, "--allow", "10.0.0.0/8", "--health-listen", f"127.0.0.1:{health}"
    )
    good = pickle.dumps({"msg": "from loopback", "levelno": 20, "name": "x"}, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(5):
            sock.sendto(struct.pack(">I", len(good)) + good, ("127.0.0.1", port))
    wait_until(
        lambda: metric(health, "logrelay_catcher_datagrams_not_allowed_total") == 5, timeout=30, what="5 refused"
    )
    assert redis_server.client().xlen("logrelay") == 0
