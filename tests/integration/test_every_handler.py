"""``logrelay up`` with every input on: each stdlib network handler, from its own process, into one file."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess
from tests.support.realredis import free_port
from tests.support.streams import count_json_lines, json_lines

pytestmark = pytest.mark.integration

CatcherFactory = Callable[..., CatcherProcess]

# One program, every stdlib network handler: each sends COUNT records "KIND n" in order.
SENDERS = """
import logging, logging.handlers, socket, sys
port, syslog, datagram, http, count = (int(a) for a in sys.argv[1:6])
user, password = sys.argv[6].split(":", 1)
handlers = {
    "socket": logging.handlers.SocketHandler("127.0.0.1", port),
    "syslog-tcp": logging.handlers.SysLogHandler(("127.0.0.1", syslog), socktype=socket.SOCK_STREAM),
    "syslog-udp": logging.handlers.SysLogHandler(("127.0.0.1", syslog)),
    "datagram": logging.handlers.DatagramHandler("127.0.0.1", datagram),
    "http-post": logging.handlers.HTTPHandler("127.0.0.1:%d" % http, "/log", "POST", credentials=(user, password)),
    "http-get": logging.handlers.HTTPHandler("127.0.0.1:%d" % http, "/log", "GET", credentials=(user, password)),
}
for kind, handler in handlers.items():
    log = logging.getLogger("every." + kind)
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    for n in range(count):
        log.warning("%s %d", kind, n, extra={"kind": kind, "n": n})
    handler.close()
"""
KINDS = ("socket", "syslog-tcp", "syslog-udp", "datagram", "http-post", "http-get")


def test_every_handler_into_one_file_each_record_once_in_order(catcher_factory: CatcherFactory, tmp_path: Path) -> None:
    output = tmp_path / "central.jsonl"
    syslog, datagram, http = free_port(), free_port(), free_port()
    users = tmp_path / "users"
    users.write_text("svc:correct horse\n")
    up = catcher_factory(
        "", "--output", str(output), "--format", "json",
        "--listen-syslog", f"127.0.0.1:{syslog}", "--listen-datagram", f"127.0.0.1:{datagram}",
        "--listen-http", f"127.0.0.1:{http}", "--http-basic-auth-file", str(users),
        command="up",
    )  # fmt: skip
    wait_until(lambda: "HTTP 127.0.0.1" in up.log, timeout=15, what="every input listening")
    count = 100  # UDP on loopback keeps this few
    args = [str(p) for p in (up.port, syslog, datagram, http, count)]
    subprocess.run([sys.executable, "-c", SENDERS, *args, "svc:correct horse"], check=True, timeout=120)
    total = count * len(KINDS)
    wait_until(lambda: count_json_lines(output) >= total, timeout=60, what=f"{total} lines")
    assert up.stop() == 0
    lines = json_lines(output)
    assert len(lines) == total
    by_kind: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for line in lines:
        kind = line["msg"].split()[0]
        by_kind[kind].append(line["msg"])
    for kind in KINDS:
        assert by_kind[kind] == [f"{kind} {n}" for n in range(count)], kind
    # Pickled extras arrive as the values they were; HTTPHandler's form turns every value into text,
    # and only the LogRecord attributes known to be numbers become numbers again; syslog carries the message.
    for line in lines:
        kind, n = line["msg"].split()
        if kind in ("socket", "datagram"):
            assert (line["kind"], line["n"], line["levelno"]) == (kind, int(n), 30)
        elif kind.startswith("http"):
            assert (line["kind"], line["n"], line["levelno"]) == (kind, n, 30)
        else:
            assert line["levelname"] == "WARNING"
            assert line["syslog"]["severity"] == 4


def test_wrong_credentials_are_refused_and_nothing_is_written(catcher_factory: CatcherFactory, tmp_path: Path) -> None:
    output = tmp_path / "central.jsonl"
    http = free_port()
    up = catcher_factory(
        "", "--output", str(output), "--format", "json", "--listen-http", f"127.0.0.1:{http}",
        "--http-basic-auth", "svc:right", command="up",
    )  # fmt: skip
    wait_until(lambda: "HTTP 127.0.0.1" in up.log, timeout=15, what="the HTTP input listening")
    program = (
        "import logging, logging.handlers, sys\n"
        f"h = logging.handlers.HTTPHandler('127.0.0.1:{http}', '/', 'POST', credentials=('svc', 'guess-9'))\n"
        "errors = []\n"
        "h.handleError = lambda record: errors.append(sys.exc_info()[1])\n"
        "log = logging.getLogger('x'); log.addHandler(h); log.warning('refused')\n"
        "print(len(errors))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    # HTTPHandler does not look at the status: the record is lost to it, and logrelay says why.
    wait_until(lambda: "refused" in up.log and "svc" in up.log, timeout=15, what="the refusal logged")
    assert "guess-9" not in up.log
    assert up.stop() == 0
    assert result.stdout.strip() == "0"
    assert not output.exists() or count_json_lines(output) == 0
