"""``logrelay catch`` as a process, real SocketHandler clients, a real redis-server."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from relay.common import speedups
from tests.support.clients import (
    finish_senders,
    read_stream,
    rss_bytes,
    sequences_by_client,
    start_senders,
)
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess
from tests.support.realredis import RedisServer, free_port
from tests.support.streams import assert_each_record_once_in_order, stream_length

pytestmark = pytest.mark.integration

CatcherFactory = Callable[..., CatcherProcess]


def frame(record: logging.LogRecord) -> bytes:
    return logging.handlers.SocketHandler("unused", 0).makePickle(record)


def make_record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("test.raw", logging.INFO, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return record


def test_many_concurrent_socket_handler_clients_every_record_once_in_order(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    catcher = catcher_factory(redis_server.url)
    clients, count = 12, 1500
    reports = finish_senders(start_senders(catcher.port, clients, count))
    assert all(report["errors"] == 0 for report in reports)

    wait_until(lambda: stream_length(redis_server) >= clients * count, timeout=30, what="all records")
    with redis_server.client() as client:
        entries = read_stream(client)
    assert_each_record_once_in_order(sequences_by_client(entries), clients, count)

    # The entry carries relay metadata next to the record as sent.
    _, fields = entries[0]
    assert fields[b"v"] == b"1"
    assert fields[b"client"].startswith(b"127.0.0.1:")
    assert float(fields[b"received"]) > 0
    assert fields[b"catcher"]
    records = [json.loads(f[b"record"]) for _, f in entries]
    with_traceback = [r for r in records if r["seq"] % 97 == 0]
    assert with_traceback
    assert all("ValueError: failure number" in r["exc_text"] for r in with_traceback)
    assert all("ünïcödé ✓" in r["msg"] for r in with_traceback)
    assert catcher.stop() == 0


def test_thousands_of_connections_on_one_catcher(redis_server: RedisServer, catcher_factory: CatcherFactory) -> None:
    # All from this one address: lift the per-client limit (1000 by default).
    catcher = catcher_factory(redis_server.url, "--max-connections-per-client", "0")
    connections = 2000
    socks = [socket.create_connection(("127.0.0.1", catcher.port)) for _ in range(connections)]
    try:
        for rounds in range(2):
            for n, sock in enumerate(socks):
                sock.sendall(frame(make_record(f"conn {n} round {rounds}", conn=n, seq=rounds)))
        wait_until(lambda: stream_length(redis_server) >= 2 * connections, timeout=60, what="all records")
    finally:
        for sock in socks:
            sock.close()
    with redis_server.client() as client:
        records = [json.loads(f[b"record"]) for _, f in read_stream(client)]
    per_conn: dict[int, list[int]] = {}
    for record in records:
        per_conn.setdefault(record["conn"], []).append(record["seq"])
    assert len(records) == 2 * connections
    assert all(seqs == [0, 1] for seqs in per_conn.values())
    assert len(per_conn) == connections


def test_redis_paused_mid_run_loses_nothing_and_doubles_nothing(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    # A 0.5 s reply timeout makes the catcher give up on batches that Redis,
    # once resumed, applies anyway: the retry must not add them twice.
    catcher = catcher_factory(redis_server.url, "--redis-timeout", "0.5")
    clients, count = 6, 4000
    # Paced over about 4 s: records are still arriving when Redis stops (unpaced, a busy machine let
    # every record be published before the pause, and the outage was never noticed; seen in CI).
    senders = start_senders(catcher.port, clients, count, rate=1000)
    wait_until(lambda: stream_length(redis_server) > 0, timeout=20, what="first records")
    redis_server.pause()
    try:
        wait_until(lambda: "cannot publish to Redis" in catcher.log, timeout=20, what="outage noticed")
    finally:
        redis_server.resume()
    reports = finish_senders(senders)
    assert all(report["errors"] == 0 for report in reports)
    wait_until(lambda: stream_length(redis_server) >= clients * count, timeout=60, what="all records")
    with redis_server.client() as client:
        assert_each_record_once_in_order(sequences_by_client(read_stream(client)), clients, count)
    assert catcher.stop() == 0
    # The outage is logged once, not once per record or per retry.
    assert catcher.log.count("cannot publish to Redis") == 1
    assert "Redis is back" in catcher.log


def test_full_buffer_pushes_back_on_senders_and_loses_nothing(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    catcher = catcher_factory(
        redis_server.url,
        "--buffer-bytes",
        "256KiB",
        "--max-decoded-bytes",
        "64KiB",
        "--batch-max-records",
        "50",
    )
    clients, count, pad = 4, 2000, 8192  # 64 MiB in all, 256 KiB of buffer
    assert catcher.process is not None
    redis_server.pause()
    try:
        # Patient clients wait on the socket instead of dropping after 1 s.
        senders = start_senders(catcher.port, clients, count, patient=True, pad=pad)
        wait_until(lambda: "buffer full" in catcher.log, timeout=30, what="backpressure")
        # TCP holds the senders back: they cannot all be done while Redis is
        # stalled, and the catcher does not hold what they have sent so far.
        assert any(proc.poll() is None for proc in senders)
        rss = rss_bytes(catcher.process.pid)
        assert rss < 100 * 2**20, f"catcher RSS {rss / 2**20:.0f} MiB while paused"
    finally:
        redis_server.resume()
    reports = finish_senders(senders)
    assert all(report["errors"] == 0 for report in reports)
    wait_until(lambda: stream_length(redis_server) >= clients * count, timeout=60, what="all records")
    with redis_server.client() as client:
        assert_each_record_once_in_order(sequences_by_client(read_stream(client)), clients, count)
    assert catcher.stop() == 0
    stats = catcher.final_stats()
    assert stats["backpressure_pauses"] >= 1
    assert stats["records_published"] == clients * count


def test_redis_unreachable_at_start_then_records_arrive_once_it_is_up(
    redis_server_factory: Callable[..., RedisServer], catcher_factory: CatcherFactory
) -> None:
    server = redis_server_factory(started=False)
    catcher = catcher_factory(server.url)
    wait_until(lambda: "unreachable" in catcher.log, timeout=10, what="startup warning")
    reports = finish_senders(start_senders(catcher.port, 2, 500))
    assert all(report["errors"] == 0 for report in reports)
    server.start()
    wait_until(lambda: stream_length(server) >= 1000, timeout=30, what="buffered records published")
    with server.client() as client:
        assert_each_record_once_in_order(sequences_by_client(read_stream(client)), 2, 500)
    assert "Traceback" not in catcher.log
    assert catcher.stop() == 0


def test_sigterm_during_load_drains_what_arrived_and_exits_zero(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    catcher = catcher_factory(redis_server.url, "--drain-timeout", "30")
    clients, count = 6, 5000
    # Patient clients: a loaded machine must not make them give up on a send.
    senders = start_senders(catcher.port, clients, count, rate=2000, patient=True)

    def every_client_connected() -> bool:
        with redis_server.client() as client:
            return len(sequences_by_client(read_stream(client))) == clients

    wait_until(every_client_connected, timeout=30, what="records from every client")
    catcher.signal(signal.SIGTERM)
    reports = finish_senders(senders)
    assert catcher.wait(timeout=60) == 0
    # New connections are refused once the listener is closed...
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", catcher.port), timeout=2)
    # ...but what the open connections carried was read and published.
    assert all(report["errors"] == 0 for report in reports)
    with redis_server.client() as client:
        assert_each_record_once_in_order(sequences_by_client(read_stream(client)), clients, count)


@pytest.mark.parametrize("pure_python", [False, True], ids=["c-speedups", "pure-python"])
def test_bad_frame_goes_to_dead_letters_and_the_connection_goes_on(
    redis_server: RedisServer,
    catcher_factory: CatcherFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pure_python: bool,
) -> None:
    if pure_python:
        monkeypatch.setenv(speedups.SWITCH, "1")
    else:
        monkeypatch.delenv(speedups.SWITCH, raising=False)
    catcher = catcher_factory(redis_server.url)
    # The start line says which paths decode (the switch reaches the process).
    wait_until(lambda: "catching on" in catcher.log, timeout=10, what="the start line")
    expected = "C speedups off" if pure_python else "C speedups: cost_scan, fast_path"
    assert expected in catcher.log
    target = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {target}",))

    hostile = pickle.dumps({"msg": Exploit()}, 1)
    with socket.create_connection(("127.0.0.1", catcher.port)) as sock:
        sock.sendall(frame(make_record("before")))
        sock.sendall(struct.pack(">L", len(hostile)) + hostile)
        sock.sendall(frame(make_record("after")))
        host, port = sock.getsockname()[:2]
        local = f"{host}:{port}"
        wait_until(lambda: stream_length(redis_server) >= 2, timeout=10, what="good records")
    wait_until(lambda: stream_length(redis_server, "{logrelay}:dead") >= 1, timeout=10, what="dead letter")
    with redis_server.client() as client:
        records = [json.loads(f[b"record"])["msg"] for _, f in read_stream(client)]
        ((_, dead),) = client.xrange("{logrelay}:dead")
    assert records == ["before", "after"]
    assert dead[b"raw"] == hostile
    assert b"os.system" in dead[b"reason"] or b"posix.system" in dead[b"reason"]
    assert dead[b"client"].decode() == local
    assert float(dead[b"received"]) > 0
    assert not target.exists()
    assert "sent to dead letters" in catcher.log


def test_frame_over_the_skip_cap_closes_only_that_connection(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    catcher = catcher_factory(redis_server.url, "--max-frame-bytes", "64KiB", "--max-skip-bytes", "1MiB")
    with (
        socket.create_connection(("127.0.0.1", catcher.port)) as bad,
        socket.create_connection(("127.0.0.1", catcher.port)) as good,
    ):
        bad.sendall(struct.pack(">L", 1024 * 1024 + 1) + b"x" * 100)
        bad.settimeout(10)
        assert bad.recv(1) == b""  # closed by the catcher
        good.sendall(frame(make_record("still served")))
        wait_until(lambda: stream_length(redis_server) >= 1, timeout=10, what="record on the other connection")
    assert "exceeds the limit" in catcher.log


def test_connections_beyond_the_limit_are_refused(redis_server: RedisServer, catcher_factory: CatcherFactory) -> None:
    catcher = catcher_factory(redis_server.url, "--max-connections", "3")
    held: list[socket.socket] = []
    try:
        # One at a time, each proven served, so the catcher has seen every
        # earlier close (including its readiness probe) before the next.
        for n in range(1, 4):
            held.append(socket.create_connection(("127.0.0.1", catcher.port)))
            held[-1].sendall(frame(make_record(f"held {n}")))
            wait_until(lambda n=n: stream_length(redis_server) >= n, timeout=10, what=f"record on connection {n}")
        with socket.create_connection(("127.0.0.1", catcher.port)) as extra:
            extra.settimeout(10)
            try:
                data = extra.recv(1)
            except ConnectionResetError:
                data = b""
            assert data == b"", "the connection over the limit was not closed"
        held[0].sendall(frame(make_record("held connections still work")))
        wait_until(lambda: stream_length(redis_server) >= 4, timeout=10, what="record after refusal")
    finally:
        for sock in held:
            sock.close()
    assert "max-connections" in catcher.log


def test_listen_port_in_use_is_a_one_line_error(redis_server: RedisServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "relay",
                "catch",
                "--listen",
                f"127.0.0.1:{port}",
                "--redis-url",
                redis_server.url,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"Error: cannot listen on 127.0.0.1:{port}" in result.stderr


def test_options_come_from_environment_variables(redis_server: RedisServer) -> None:
    port = free_port()
    env = {
        **os.environ,
        "LOGRELAY_CATCH_LISTEN": f"127.0.0.1:{port}",
        "LOGRELAY_CATCH_REDIS_URL": redis_server.url,
        "LOGRELAY_CATCH_STREAM": "from-env",
    }
    proc = subprocess.Popen([sys.executable, "-m", "relay", "catch"], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _connects(port), timeout=15, what="catcher from env")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(frame(make_record("configured by env")))
        wait_until(lambda: stream_length(redis_server, "from-env") == 1, timeout=10, what="record in from-env")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def test_a_frame_that_never_completes_is_cut_off(redis_server: RedisServer, catcher_factory: CatcherFactory) -> None:
    catcher = catcher_factory(redis_server.url, "--frame-timeout", "1")
    with (
        socket.create_connection(("127.0.0.1", catcher.port)) as loris,
        socket.create_connection(("127.0.0.1", catcher.port)) as good,
    ):
        data = frame(make_record("a slow frame"))
        loris.sendall(data[:20])  # ... and never the rest
        loris.settimeout(15)
        try:
            closed = loris.recv(1) == b""
        except ConnectionResetError:
            closed = True
        assert closed
        good.sendall(frame(make_record("unaffected")))
        wait_until(lambda: stream_length(redis_server) >= 1, timeout=10, what="the good record")
    assert "frame-timeout" in catcher.log
    assert catcher.stop() == 0
    assert catcher.final_stats()["slow_frames"] == 1


def test_at_max_stream_length_block_holds_records_and_shed_drops_new_ones(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    # No consumer trims this stream: it fills towards the limit and stops there.
    blocking = catcher_factory(redis_server.url, "--max-stream-length", "300", "--stream", "blocked")
    finish_senders(start_senders(blocking.port, 2, 250))
    wait_until(lambda: "maximum length" in blocking.log, timeout=20, what="the stream full, logged")
    # A batch is written whole or not at all, so the stream stops at most one batch short of the limit.
    with redis_server.client() as client:
        before = sequences_by_client(read_stream(client, "blocked"))
        assert sum(len(seqs) for seqs in before.values()) <= 300
        client.xtrim("blocked", maxlen=0, approximate=False)  # consumers catch up
        # Held, not dropped: once the stream has room, the rest arrives, in order.
        wait_until(
            lambda: sum(len(seqs) for seqs in before.values()) + client.xlen("blocked") >= 500,
            timeout=20,
            what="the held records",
        )
        after = sequences_by_client(read_stream(client, "blocked"))
    for client_id in ("c0", "c1"):
        assert before.get(client_id, []) + after.get(client_id, []) == list(range(250))
    assert blocking.stop() == 0
    assert blocking.final_stats()["records_shed"] == 0

    shedding = catcher_factory(
        redis_server.url, "--max-stream-length", "300", "--full-policy", "shed", "--stream", "shed"
    )
    reports = finish_senders(start_senders(shedding.port, 2, 250))
    assert all(report["errors"] == 0 for report in reports)  # applications never stall
    assert shedding.stop() == 0
    stats = shedding.final_stats()
    assert stream_length(redis_server, "shed") == 300
    assert stats["records_shed"] == 200
    assert stats["records_published"] == 300
    assert "shedding new records" in shedding.log
