"""The fleet, as compose.yaml lays it out, with real processes.

redis-server, three ``logrelay catch`` behind HAProxy (Debian's package,
running deploy/haproxy.cfg), one ``logrelay consume file``, and client
processes using SocketHandler or ReliableSocketHandler.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.balancer import HAProxyProcess, local_config
from tests.support.clients import finish_senders, start_senders
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess, ConsumerProcess
from tests.support.realredis import RedisServer, free_port
from tests.support.streams import assert_each_record_once_in_order, count_json_lines, json_lines

pytestmark = pytest.mark.integration

CATCHER_ARGS = ("--proxy-protocol", "--shutdown-grace", "3", "--drain-timeout", "4")


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def metrics(health_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return {name: float(value) for name, value in (line.split() for line in lines if not line.startswith("#"))}


@dataclass
class Fleet:
    redis: RedisServer
    start_catcher: Callable[..., CatcherProcess]
    haproxy: HAProxyProcess
    consumer: ConsumerProcess
    output: Path
    ports: list[tuple[int, int]]
    inputs: list[dict[str, int]]
    catchers: list[CatcherProcess] = field(default_factory=list)

    def catcher_args(self, n: int) -> tuple[str, ...]:
        health = self.ports[n][1]
        syslog, http = self.inputs[n]["syslog"], self.inputs[n]["http"]
        return (
            *CATCHER_ARGS,
            "--health-listen", f"127.0.0.1:{health}",
            "--catcher-id", f"catcher{n + 1}",
            "--listen-syslog", f"127.0.0.1:{syslog}",
            "--listen-http", f"127.0.0.1:{http}",
        )  # fmt: skip

    def all_up(self) -> bool:
        for backend in ("catchers", "catchers-syslog", "catchers-http"):
            states = self.haproxy.server_states(backend)
            if len(states) != len(self.ports) or any(state != "UP" for state in states.values()):
                return False
        return True

    def restart(self, n: int) -> None:
        """SIGTERM catcher n (it turns unready, serves its grace, drains), then start it again."""
        old = self.catchers[n]
        assert old.stop(timeout=60) == 0
        self.catchers[n] = self.start_catcher(self.redis.url, *self.catcher_args(n), port=self.ports[n][0])
        wait_until(self.all_up, timeout=30, what=f"catcher{n + 1} back in the balancer")


@pytest.fixture
def fleet(
    redis_server: RedisServer,
    catcher_factory: Callable[..., CatcherProcess],
    consumer_factory: Callable[..., ConsumerProcess],
    tmp_path: Path,
) -> Iterator[Fleet]:
    ports = [(free_port(), free_port()) for _ in range(3)]
    inputs = [{"syslog": free_port(), "http": free_port()} for _ in range(3)]
    haproxy = HAProxyProcess(local_config(ports, inputs), tmp_path)
    output = tmp_path / "central.jsonl"
    # No trimming: the tests compare the file with everything the stream received.
    consumer = consumer_factory(redis_server.url, output, "--format", "json", "--trim-interval", "0")
    fleet = Fleet(redis_server, catcher_factory, haproxy, consumer, output, ports, inputs)
    for n, (port, _) in enumerate(ports):
        fleet.catchers.append(catcher_factory(redis_server.url, *fleet.catcher_args(n), port=port))
    haproxy.start()
    try:
        wait_until(fleet.all_up, timeout=30, what="three catchers UP in HAProxy")
        yield fleet
    finally:
        haproxy.stop()


def records_by_client(path: Path) -> list[tuple[str, int]]:
    return [(r["client_id"], r["seq"]) for r in json_lines(path)]


def assert_once_and_in_order_per_connection(path: Path, expected: set[tuple[str, int]]) -> None:
    """Each record exactly once; each connection's records (client address) in the order sent.

    Across a reconnection to another catcher, a client's records may interleave
    by the few that were in flight on the old connection: per-connection order
    is the guarantee (docs/stream-format.md).
    """
    records = json_lines(path)
    keys = [(r["client_id"], r["seq"]) for r in records]
    assert len(keys) == len(set(keys)), "a record was written twice"
    assert set(keys) == expected, f"missing: {sorted(expected - set(keys))[:10]}"
    per_connection: dict[str, list[int]] = {}
    for record in records:
        per_connection.setdefault(record["logrelay"]["client"], []).append(record["seq"])
    for address, seqs in per_connection.items():
        assert seqs == sorted(seqs), f"records of connection {address} out of order"


def test_twenty_clients_through_haproxy_every_record_once_with_their_own_addresses(fleet: Fleet) -> None:
    clients, count = 20, 300
    reports = finish_senders(start_senders(fleet.haproxy.port, clients, count))
    assert all(report["errors"] == 0 for report in reports)

    wait_until(lambda: count_json_lines(fleet.output) >= clients * count, timeout=60, what="all lines")
    records = json_lines(fleet.output)
    assert_each_record_once_in_order([(r["client_id"], r["seq"]) for r in records], clients, count)
    # The PROXY v2 header made each entry carry the client's own address
    # (its local port), not the balancer's.
    own = {report["client"]: set(report["addresses"]) for report in reports}
    for record in records:
        assert record["logrelay"]["client"] in own[record["client_id"]]
    # leastconn spread the clients over the three catchers.
    assert set(Counter(r["logrelay"]["catcher"] for r in records)) == {"catcher1", "catcher2", "catcher3"}


# Syslog over TCP and HTTPHandler, each client its own process, through HAProxy's other frontends.
OTHER_SENDER = """
import json, logging, logging.handlers, socket, sys
kind, port, name, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if kind == "syslog":
    handler = logging.handlers.SysLogHandler(("127.0.0.1", port), socktype=socket.SOCK_STREAM)
    handler.ident = name + ": "
    address = "%s:%d" % handler.socket.getsockname()[:2]
else:
    handler = logging.handlers.HTTPHandler("127.0.0.1:%d" % port, "/log", "POST")
    address = None
log = logging.getLogger(name)
log.propagate = False
log.addHandler(handler)
for n in range(count):
    log.warning("%s %d", name, n)
handler.close()
print(json.dumps(address))
"""


def test_syslog_over_tcp_and_http_through_haproxy_every_record_once_with_their_own_addresses(fleet: Fleet) -> None:
    senders = [("syslog", fleet.haproxy.syslog_port, f"sys{n}", 300) for n in range(6)]
    senders += [("http", fleet.haproxy.http_port, f"web{n}", 60) for n in range(3)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OTHER_SENDER, kind, str(port), name, str(count)], stdout=subprocess.PIPE
        )
        for kind, port, name, count in senders
    ]
    addresses = {}
    for (_, _, name, _), proc in zip(senders, procs, strict=True):
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        addresses[name] = json.loads(out)
    total = sum(count for *_, count in senders)
    wait_until(lambda: count_json_lines(fleet.output) >= total, timeout=60, what="all lines")
    records = json_lines(fleet.output)
    assert len(records) == total
    by_name: dict[str, list[int]] = {}
    for record in records:
        name, n = record["msg"].split()
        by_name.setdefault(name, []).append(int(n))
        client = record["logrelay"]["client"]
        if name.startswith("sys"):
            # The PROXY v2 header: the sender's own address, not the balancer's.
            assert client == f"syslog+tcp://{addresses[name]}"
        else:
            assert client.startswith("http://127.0.0.1:")
    # Each syslog connection's records in order; HTTPHandler opens a connection per record, which the
    # balancer spreads over the catchers: each record once, in the order the catchers published them.
    assert {name: seqs if name.startswith("sys") else sorted(seqs) for name, seqs in by_name.items()} == {
        name: list(range(count)) for _, _, name, count in senders
    }
    assert len({r["logrelay"]["catcher"] for r in records if r["msg"].startswith("sys")}) > 1


def test_rolling_restart_with_reliable_clients_loses_and_doubles_nothing(fleet: Fleet) -> None:
    clients, count, rate = 8, 4000, 400.0  # ten seconds of records per client
    senders = start_senders(fleet.haproxy.port, clients, count, rate=rate, reliable=True)
    for n in range(3):
        fleet.restart(n)
    reports = finish_senders(senders)
    assert all(report["errors"] == 0 for report in reports)
    wait_until(lambda: count_json_lines(fleet.output) >= clients * count, timeout=60, what="all lines")
    expected = {(f"c{n}", seq) for n in range(clients) for seq in range(count)}
    assert_once_and_in_order_per_connection(fleet.output, expected)


def test_rolling_restart_with_stock_clients_delivers_everything_accepted(fleet: Fleet, capsys: Any) -> None:
    # Clients that keep sending through every drain deadline, as services do.
    clients, count, rate = 8, 10000, 400.0
    senders = start_senders(fleet.haproxy.port, clients, count, rate=rate)
    for n in range(3):
        fleet.restart(n)
    reports = finish_senders(senders)
    with fleet.redis.client() as client:
        accepted = int(client.xlen("logrelay"))
    wait_until(lambda: count_json_lines(fleet.output) >= accepted, timeout=60, what="every accepted record")
    with fleet.redis.client() as client:
        in_stream = {(json.loads(f[b"record"])["client_id"], json.loads(f[b"record"])["seq"])
                     for _, f in client.xrange("logrelay")}  # fmt: skip
    assert len(in_stream) == accepted  # the catchers doubled nothing
    assert_once_and_in_order_per_connection(fleet.output, in_stream)  # all accepted reach the file, once
    emitted = clients * count
    dropped = sum(int(report["errors"]) for report in reports)
    with capsys.disabled():
        print(
            f"\nstock SocketHandler across a rolling restart of 3 catchers: {emitted} emitted, "
            f"{accepted} arrived, {emitted - accepted} lost ({dropped} dropped visibly by the handler)"
        )


def test_a_catcher_that_cannot_reach_redis_is_taken_out_of_rotation(
    fleet: Fleet, catcher_factory: Callable[..., CatcherProcess], tmp_path: Path
) -> None:
    # Replace catcher 3 by one pointing at a Redis that is not there.
    assert fleet.catchers[2].stop() == 0
    port, health = fleet.ports[2]
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    fleet.catchers[2] = catcher_factory(dead_redis, *fleet.catcher_args(2), port=port)
    assert http_status(f"http://127.0.0.1:{health}/readyz") == 503
    assert http_status(f"http://127.0.0.1:{health}/livez") == 200
    wait_until(lambda: fleet.haproxy.server_states().get("catcher3") == "DOWN", timeout=30, what="catcher3 marked DOWN")

    accepted_before = metrics(health)["logrelay_catcher_connections_accepted_total"]  # our own start-up probe
    reports = finish_senders(start_senders(fleet.haproxy.port, 12, 200))
    assert all(report["errors"] == 0 for report in reports)
    wait_until(lambda: count_json_lines(fleet.output) >= 2400, timeout=60, what="all lines")
    assert_each_record_once_in_order(records_by_client(fleet.output), 12, 200)
    # HAProxy sent none of the twelve clients to the catcher that could not publish.
    assert metrics(health)["logrelay_catcher_connections_accepted_total"] == accepted_before
    assert metrics(health)["logrelay_catcher_ready"] == 0


def test_without_a_proxy_header_a_connection_is_refused_with_a_log_line(fleet: Fleet) -> None:
    catcher = fleet.catchers[0]
    finish_senders(start_senders(catcher.port, 1, 5))  # straight to the catcher, no balancer
    wait_until(lambda: "PROXY protocol" in catcher.log, timeout=10, what="the refusal in the log")
    assert metrics(fleet.ports[0][1])["logrelay_catcher_proxy_header_errors_total"] >= 1
    with fleet.redis.client() as client:
        entries = client.xrange("logrelay")
    assert not [e for e in entries if json.loads(e[1][b"record"]).get("client_id") == "c0"]


def test_sigterm_turns_readiness_false_before_the_listener_closes(fleet: Fleet) -> None:
    catcher = fleet.catchers[1]
    port, health = fleet.ports[1]
    catcher.signal(signal.SIGTERM)
    wait_until(lambda: http_status(f"http://127.0.0.1:{health}/readyz") == 503, timeout=5, what="not ready")
    # Still accepting during the grace period...
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    wait_until(
        lambda: fleet.haproxy.server_states().get("catcher2") == "DOWN", timeout=10, what="catcher2 out of rotation"
    )
    assert catcher.wait(60) == 0
