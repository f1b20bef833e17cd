"""``--listen-syslog``: real syslog senders (util-linux ``logger``, the stdlib's SysLogHandler) into the stream."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import wait_for_entries
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess
from tests.support.realredis import RedisServer, free_port

pytestmark = pytest.mark.integration

CatcherFactory = Callable[..., CatcherProcess]


def records(redis_server: RedisServer, count: int, key: str = "logrelay") -> list[tuple[dict[str, Any], str]]:
    """The first ``count`` records of the stream (waiting for them): (record, client)."""
    client = redis_server.client()
    entries = wait_for_entries(client, count, key)
    return [(json.loads(fields[b"record"]), fields[b"client"].decode()) for _, fields in entries]


def syslog_catcher(
    catcher_factory: CatcherFactory, redis_server: RedisServer, *args: str
) -> tuple[CatcherProcess, int]:
    port = free_port()
    catcher = catcher_factory(redis_server.url, "--listen-syslog", f"127.0.0.1:{port}", *args)
    wait_until(lambda: "syslog (UDP, TCP)" in catcher.log, timeout=15, what="the syslog input listening")
    return catcher, port


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger is not installed")
def test_logger_rfc5424_octet_counted_over_tcp_and_rfc3164_over_udp(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    _, port = syslog_catcher(catcher_factory, redis_server)
    logger = ["logger", "-n", "127.0.0.1", "-P", str(port)]
    subprocess.run(
        [*logger, "--tcp", "--octet-count", "--rfc5424", "-t", "billing", "-p", "local3.warning",
         "--msgid", "INV42", "--sd-id", "order@32473", "--sd-param", 'id="7"', "invoice sent"],
        check=True, timeout=30,
    )  # fmt: skip
    (first,) = records(redis_server, 1)
    subprocess.run(
        [*logger, "--udp", "--rfc3164", "-t", "cron", "-p", "cron.err", "job failed"], check=True, timeout=30
    )
    second = records(redis_server, 2)[1]

    record, client = first
    assert client.startswith("syslog+tcp://127.0.0.1:")
    assert (record["name"], record["msg"], record["levelname"], record["levelno"]) == (
        "billing",
        "invoice sent",
        "WARNING",
        30,
    )
    assert record["syslog"]["rfc"] == 5424
    assert (record["syslog"]["facility"], record["syslog"]["severity"]) == (19, 4)
    assert record["syslog"]["msgid"] == "INV42"
    assert record["syslog"]["structured_data"]["order@32473"] == {"id": "7"}
    assert record["syslog"]["hostname"] == socket.gethostname()

    record, client = second
    assert client.startswith("syslog+udp://127.0.0.1:")
    assert (record["name"], record["msg"], record["levelname"]) == ("cron", "job failed", "ERROR")
    assert record["syslog"]["rfc"] == 3164
    assert (record["syslog"]["facility"], record["syslog"]["severity"]) == (9, 3)


SYSLOG_SENDER = """
import logging, logging.handlers, socket, sys
port, kind, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
socktype = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
handler = logging.handlers.SysLogHandler(("127.0.0.1", port), socktype=socktype)
handler.ident = "svc-" + kind + ": "
log = logging.getLogger("svc")
log.addHandler(handler)
log.setLevel(logging.DEBUG)
for n in range(count):
    log.log((logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)[n % 5], "record %d", n)
handler.close()
"""


@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_stdlib_sysloghandler_every_record_once_in_order(
    redis_server: RedisServer, catcher_factory: CatcherFactory, kind: str
) -> None:
    _, port = syslog_catcher(catcher_factory, redis_server)
    count = 2000 if kind == "tcp" else 300  # UDP: few enough that loopback keeps every one
    subprocess.run([sys.executable, "-c", SYSLOG_SENDER, str(port), kind, str(count)], check=True, timeout=60)
    got = records(redis_server, count)
    assert [record["msg"] for record, _ in got] == [f"record {n}" for n in range(count)]
    levels = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    assert [record["levelname"] for record, _ in got] == [levels[n % 5] for n in range(count)]
    assert {record["name"] for record, _ in got} == {f"svc-{kind}"}
    assert {client.split("://")[0] for _, client in got} == {f"syslog+{kind}"}


def test_an_oversize_or_broken_message_is_a_dead_letter_and_the_sender_goes_on(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    catcher, port = syslog_catcher(catcher_factory, redis_server, "--max-frame-bytes", "4096")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"<13>app: before\n")
        sock.sendall(b"<13>app: " + b"x" * 100_000 + b"\n")  # too long: read and skipped
        sock.sendall(b"<999>not a priority\n")
        sock.sendall(b"19 <13>app: counted ok")
        sock.sendall(b"<13>app: after")  # no terminator: complete when the sender closes
    got = records(redis_server, 3)
    assert [record["msg"] for record, _ in got] == ["before", "counted ok", "after"]
    client = redis_server.client()
    letters = wait_for_entries(client, 2, "{logrelay}:dead")
    reasons = [fields[b"reason"].decode() for _, fields in letters]
    assert len(letters) == 2
    assert "exceeds max-frame-bytes (4096)" in reasons[0]
    assert "PRI 999 is beyond 191" in reasons[1]
    catcher.check_running()


@pytest.fixture(scope="module")
def server_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("syslog-tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", "key.pem", "-out", "cert.pem"],
        cwd=d, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return d / "cert.pem", d / "key.pem"


def test_syslog_over_tls_octet_counted_as_rfc5425_says(
    redis_server: RedisServer, catcher_factory: CatcherFactory, server_cert: tuple[Path, Path]
) -> None:
    cert, key = server_cert
    _, port = syslog_catcher(catcher_factory, redis_server, "--tls-cert", str(cert), "--tls-key", str(key))
    context = ssl.create_default_context(cafile=str(cert))
    messages = [b"<14>1 2026-12-07T10:00:00Z host tlsapp - - - secure %d" % n for n in range(50)]
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(b"".join(b"%d %s" % (len(m), m) for m in messages))
    got = records(redis_server, 50)
    assert [record["msg"] for record, _ in got] == [f"secure {n}" for n in range(50)]
    assert {client.split("://")[0] for _, client in got} == {"syslog+tls"}
    # Plain UDP syslog still works beside it (TLS is the TCP side's).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(b"<14>udpapp: plain", ("127.0.0.1", port))
    assert records(redis_server, 51)[50][0]["msg"] == "plain"


HTTPS_SENDER = """
import logging, logging.handlers, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
context = ssl.create_default_context(cafile=cafile)
handler = logging.handlers.HTTPHandler(
    "127.0.0.1:%d" % port, "/log", "POST", secure=True, credentials=("svc", "pw"), context=context
)
log = logging.getLogger("tls.web")
log.addHandler(handler)
for n in range(20):
    log.error("over https %d", n)
"""


def test_httphandler_over_tls_with_the_listeners_certificate(
    redis_server: RedisServer, catcher_factory: CatcherFactory, server_cert: tuple[Path, Path]
) -> None:
    cert, key = server_cert
    http = free_port()
    catcher_factory(
        redis_server.url, "--listen-http", f"127.0.0.1:{http}", "--http-basic-auth", "svc:pw",
        "--tls-cert", str(cert), "--tls-key", str(key),
    )  # fmt: skip
    subprocess.run([sys.executable, "-c", HTTPS_SENDER, str(http), str(cert)], check=True, timeout=60)
    got = records(redis_server, 20)
    assert [record["msg"] for record, _ in got] == [f"over https {n}" for n in range(20)]
    assert {(record["levelno"], record["name"]) for record, _ in got} == {(40, "tls.web")}
    assert {client.split("://")[0] for _, client in got} == {"https"}


EXCEPTION_SENDER = """
import logging, logging.handlers, socket, sys
handler = logging.handlers.SysLogHandler(("127.0.0.1", int(sys.argv[1])), socktype=socket.SOCK_STREAM)
handler.ident = "svc: "
log = logging.getLogger("svc")
log.addHandler(handler)
for n in range(3):
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("failed %d", n)
handler.close()
"""


def test_a_traceback_from_sysloghandler_over_tcp_is_one_record(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    _, port = syslog_catcher(catcher_factory, redis_server)
    subprocess.run([sys.executable, "-c", EXCEPTION_SENDER, str(port)], check=True, timeout=60)
    got = records(redis_server, 3)
    for n, (record, _) in enumerate(got):
        lines = record["msg"].splitlines()
        assert lines[0] == f"failed {n}"
        assert lines[1] == "Traceback (most recent call last):"
        assert lines[-1] == "ZeroDivisionError: division by zero"
        assert (record["name"], record["levelname"]) == ("svc", "ERROR")
    client = redis_server.client()
    assert client.xlen("logrelay") == 3
