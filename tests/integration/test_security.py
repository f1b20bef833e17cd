"""TLS, mutual TLS and the client allow-list, against a real catcher process."""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess
from tests.support.realredis import RedisServer, free_port

pytestmark = pytest.mark.integration

CatcherFactory = Callable[..., CatcherProcess]


@dataclass(frozen=True)
class PKI:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """A CA, a server certificate for 127.0.0.1, a client certificate it signed, and a rogue one it did not."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, subject in (("server", "/CN=localhost"), ("client", "/CN=service-a")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", f"{name}.key",
                "-out", f"{name}.csr", cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem", cwd=d)  # fmt: skip
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rogue",
            "-keyout", "rogue.key", "-out", "rogue.pem", cwd=d)  # fmt: skip
    return PKI(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key",
               d / "rogue.pem", d / "rogue.key")  # fmt: skip


class TLSSocketHandler(logging.handlers.SocketHandler):
    """What a service uses to log over TLS: the stock handler with its socket wrapped."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(host, port)
        self.context = context
        self.failures = 0

    def makeSocket(self, timeout: float = 1) -> socket.socket:
        sock = super().makeSocket(timeout)
        try:
            return self.context.wrap_socket(sock, server_hostname=self.host)
        except (ssl.SSLError, OSError):
            sock.close()
            self.failures += 1
            raise

    def close(self) -> None:
        # A TLS client says goodbye (close_notify) before closing: a bare close
        # with the server's session tickets unread makes the kernel send a
        # reset, which can beat the last records to the server.
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket):
            with contextlib.suppress(OSError, ssl.SSLError):
                sock.settimeout(5)
                sock.unwrap()
        super().close()


def client_context(pki: PKI, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


def log_through(handler: logging.Handler, messages: list[str]) -> None:
    logger = logging.getLogger(f"tls.{id(handler)}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for message in messages:
            logger.warning(message)
    finally:
        handler.close()
        logger.removeHandler(handler)


def messages_in(server: RedisServer) -> list[str]:
    with server.client() as client:
        return [json.loads(fields[b"record"])["msg"] for _, fields in client.xrange("logrelay")]


def test_tls_listener_takes_records_from_tls_clients_only(
    redis_server: RedisServer, catcher_factory: CatcherFactory, pki: PKI
) -> None:
    catcher = catcher_factory(redis_server.url, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key))
    log_through(TLSSocketHandler("127.0.0.1", catcher.port, client_context(pki)), ["over tls 1", "over tls 2"])
    wait_until(lambda: len(messages_in(redis_server)) >= 2, timeout=15, what="records over TLS")
    # A plain SocketHandler's bytes are not a TLS handshake: nothing of it lands.
    log_through(logging.handlers.SocketHandler("127.0.0.1", catcher.port), ["in the clear"])
    assert catcher.stop() == 0
    assert messages_in(redis_server) == ["over tls 1", "over tls 2"]


def test_mutual_tls_requires_a_certificate_from_the_ca(
    redis_server: RedisServer, catcher_factory: CatcherFactory, pki: PKI
) -> None:
    catcher = catcher_factory(
        redis_server.url,
        "--tls-cert", str(pki.server_cert),
        "--tls-key", str(pki.server_key),
        "--tls-client-ca", str(pki.ca),
    )  # fmt: skip
    log_through(
        TLSSocketHandler("127.0.0.1", catcher.port, client_context(pki, pki.client_cert, pki.client_key)),
        ["with a good certificate"],
    )
    wait_until(lambda: len(messages_in(redis_server)) >= 1, timeout=15, what="the record from the trusted client")
    log_through(TLSSocketHandler("127.0.0.1", catcher.port, client_context(pki)), ["without certificate"])
    log_through(
        TLSSocketHandler("127.0.0.1", catcher.port, client_context(pki, pki.rogue_cert, pki.rogue_key)),
        ["with a rogue certificate"],
    )
    assert catcher.stop() == 0
    assert messages_in(redis_server) == ["with a good certificate"]


def test_clients_outside_the_allowed_networks_are_refused(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    refusing = catcher_factory(redis_server.url, "--allow", "10.0.0.0/8", "--allow", "2001:db8::/32")
    log_through(logging.handlers.SocketHandler("127.0.0.1", refusing.port), ["from loopback"])
    wait_until(lambda: "allowed networks" in refusing.log, timeout=10, what="the refusal logged")
    accepting = catcher_factory(redis_server.url, "--allow", "127.0.0.0/8")
    log_through(logging.handlers.SocketHandler("127.0.0.1", accepting.port), ["from an allowed network"])
    wait_until(lambda: len(messages_in(redis_server)) >= 1, timeout=10, what="the allowed record")
    assert refusing.stop() == 0
    assert accepting.stop() == 0
    assert messages_in(redis_server) == ["from an allowed network"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "{cert}"], "both --tls-cert and --tls-key"),
        (["--tls-cert", "{cert}", "--tls-key", "{ca}"], "cannot load the TLS"),
        (["--tls-cert", "{cert}", "--tls-key", "{key}", "--proxy-protocol"], "terminate TLS at the balancer"),
        (["--allow", "not-a-net"], "not a network"),
    ],
)
def test_bad_security_options_are_one_line_usage_errors(pki: PKI, args: list[str], message: str) -> None:
    import sys

    paths = {"cert": str(pki.server_cert), "key": str(pki.server_key), "ca": str(pki.ca)}
    result = subprocess.run(
        [sys.executable, "-m", "relay", "catch", *(arg.format(**paths) for arg in args)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_redis_acl_credentials_from_the_url_and_never_in_the_log(
    catcher_factory: CatcherFactory, tmp_path: Path
) -> None:
    acl = ("--user", "default", "off", "--user", "logrelay", "on", ">s3cret-pw", "~*", "&*", "+@all")
    server = RedisServer(tmp_path / "acl-redis", extra_args=acl, username="logrelay", password="s3cret-pw").start()
    try:
        good = catcher_factory(f"redis://logrelay:s3cret-pw@127.0.0.1:{server.port}/0")
        log_through(logging.handlers.SocketHandler("127.0.0.1", good.port), ["authenticated"])
        wait_until(lambda: len(messages_in(server)) >= 1, timeout=10, what="the record")
        wrong = catcher_factory(f"redis://logrelay:wrong-pw@127.0.0.1:{server.port}/0", wait_listening=False)
        assert wrong.wait() == 1  # a refused login is no outage to wait out
        assert f"Error: Redis refused the password for redis://logrelay:***@127.0.0.1:{server.port}/0 " in wrong.log
        assert good.stop() == 0
        for catcher in (good, wrong):
            assert "s3cret-pw" not in catcher.log
            assert "wrong-pw" not in catcher.log
            assert "Traceback" not in catcher.log
        assert messages_in(server) == ["authenticated"]
    finally:
        server.stop()


@contextlib.contextmanager
def tls_redis(pki: PKI, tmp_path: Path) -> Iterator[tuple[RedisServer, str]]:
    """A redis-server with a TLS port (its plain port is for the test only), and the rediss:// URL to it."""
    tls_port = free_port()
    tls = (
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(pki.server_cert),
        "--tls-key-file", str(pki.server_key),
        "--tls-ca-cert-file", str(pki.ca),
        "--tls-auth-clients", "no",
    )  # fmt: skip
    server = RedisServer(tmp_path / "tls-redis", extra_args=tls).start()
    try:
        yield server, f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={pki.ca}"
    finally:
        server.stop()


def test_catcher_publishes_to_redis_over_tls(catcher_factory: CatcherFactory, pki: PKI, tmp_path: Path) -> None:
    with tls_redis(pki, tmp_path) as (server, url):
        catcher = catcher_factory(url)
        log_through(logging.handlers.SocketHandler("127.0.0.1", catcher.port), ["over rediss"])
        wait_until(lambda: len(messages_in(server)) >= 1, timeout=15, what="the record, published over TLS")
        assert catcher.stop() == 0
        assert "rediss://127.0.0.1" in catcher.log
        assert messages_in(server) == ["over rediss"]


def test_the_operating_commands_over_tls(pki: PKI, tmp_path: Path) -> None:
    """``status``, ``tail`` and ``dead-letters`` take the same rediss:// URLs as ``catch``."""
    from tests.support.dead_letters import big_frame, publish_dead_letter, refused

    def logrelay(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "relay", *args, "--redis-url", url]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
        return result

    with tls_redis(pki, tmp_path) as (server, url):
        with server.client() as client:
            letter_id = publish_dead_letter(client, refused(big_frame())).decode()
        assert [item["id"] for item in json.loads(logrelay("dead-letters", "list", "--json").stdout)] == [letter_id]
        replayed = logrelay("dead-letters", "replay", letter_id, "--max-decoded-bytes", "4MiB")
        assert replayed.stdout.splitlines()[-1] == "replayed 1, still refused 0"
        report = json.loads(logrelay("status", "--json").stdout)
        assert (report["length"], report["dead_letters"]) == (1, 0)
        (line,) = logrelay("tail", "-n", "5", "--format", "json").stdout.splitlines()
        assert json.loads(line)["msg"] == "x" * 200_000
