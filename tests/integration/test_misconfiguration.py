"""Configuration mistakes made for real: each is one line and exit status 1 (2 for a malformed URL), at once.

A wrong Redis password, none where Redis wants one, a database Redis does
not have: Redis answers and refuses, which no retry fixes.  The commands say
so naming the option and its variable instead of waiting for ever, and the
catcher says so before it listens: no sender's record is accepted that could
never be published.  (Redis unreachable at start is still waited for:
tests/integration/test_faults.py::test_redis_unreachable_at_start_catcher_and_consumer_wait_then_work.)
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from relay import __version__
from relay.common import speedups
from tests.integration.test_consume import http_get, scraped
from tests.support.clients import read_stream, stock_logger, wait_for_entries
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess
from tests.support.realredis import RedisServer, free_port

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-pw"
DATABASES = 2
RECORDS = 50


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server that wants ``PASSWORD`` and has ``DATABASES`` databases."""
    server = RedisServer(
        tmp_path / "locked",
        extra_args=("--requirepass", PASSWORD, "--databases", str(DATABASES)),
        password=PASSWORD,
    ).start()
    yield server
    server.stop()


def environment(**variables: str) -> dict[str, str]:
    """This process's environment without its LOGRELAY_* options (the speedups' switch kept), plus ``variables``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("LOGRELAY_") or k == speedups.SWITCH}
    return {**kept, **variables}


def logrelay(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", *args], env=env or environment(), capture_output=True, text=True, timeout=60
    )


def one_error_line(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The one ``Error:`` line of a command that failed with ``code``, no traceback."""
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def catch_while_sending(redis_url: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``logrelay catch`` while a stock SocketHandler logs to its port; (its result, connections it accepted).

    The handler and a plain connect are tried until the catcher exits: any
    connection that succeeded was accepted by the catcher.
    """
    port = free_port()
    command = [sys.executable, "-m", "relay", "catch", "--listen", f"127.0.0.1:{port}", "--redis-url", redis_url]
    process = subprocess.Popen(
        [*command, *extra], env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    handler = logging.handlers.SocketHandler("127.0.0.1", port)
    handler.retryMax = 0.05  # the stock handler backs off up to 30 s between connects; try all along
    logger = logging.Logger("misconfigured-sender")
    logger.addHandler(handler)
    accepted = 0
    deadline = time.monotonic() + 60
    try:
        while process.poll() is None and time.monotonic() < deadline:
            logger.warning("record %d", accepted)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                continue
            accepted += 1
    finally:
        handler.close()
        if process.poll() is None:
            process.kill()
        stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), accepted


def with_password(server: RedisServer, password: str | None, db: int = 0) -> str:
    login = f":{password}@" if password is not None else ""
    return f"redis://{login}127.0.0.1:{server.port}/{db}"


@pytest.mark.parametrize(
    ("password", "db", "message"),
    [
        ("wrong-pw", 0, "Redis refused the password for redis://:***@127.0.0.1:{port}/0"),
        (None, 0, "Redis requires a password and the URL gives none for redis://127.0.0.1:{port}/0"),
        (PASSWORD, DATABASES + 3, "Redis has no such database (see its 'databases' setting) for "),
    ],
    ids=["wrong password", "no password", "database beyond 'databases'"],
)
def test_the_catcher_refused_by_redis_exits_before_it_accepts_a_record(
    locked_redis: RedisServer, password: str | None, db: int, message: str
) -> None:
    done, accepted = catch_while_sending(with_password(locked_redis, password, db))
    line = one_error_line(done)
    assert message.format(port=locked_redis.port) in line
    assert "(--redis-url, LOGRELAY_CATCH_REDIS_URL)" in line
    assert "wrong-pw" not in done.stderr
    assert PASSWORD not in done.stderr
    assert accepted == 0
    with locked_redis.client() as client:
        assert read_stream(client) == []


def test_the_consumer_refused_by_redis_exits_without_touching_the_file(
    locked_redis: RedisServer, tmp_path: Path
) -> None:
    output = tmp_path / "central.log"
    done = logrelay("consume", "file", "--redis-url", with_password(locked_redis, "wrong-pw"), "--output", str(output))
    assert "(--redis-url, LOGRELAY_CONSUME_FILE_REDIS_URL)" in one_error_line(done)
    assert not output.exists()


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        (["status"], "LOGRELAY_STATUS_REDIS_URL"),
        (["tail", "--follow"], "LOGRELAY_TAIL_REDIS_URL"),
        (["dead-letters", "list"], "LOGRELAY_DEAD_LETTERS_LIST_REDIS_URL"),
        (["up", "--listen", "127.0.0.1:0", "--output", "{tmp}/central.log"], "LOGRELAY_UP_REDIS_URL"),
    ],
)
def test_every_command_names_the_variable_the_refused_url_came_from(
    locked_redis: RedisServer, tmp_path: Path, command: list[str], variable: str
) -> None:
    args = [arg.format(tmp=tmp_path) for arg in command]
    done = logrelay(*args, env=environment(**{variable: with_password(locked_redis, "wrong-pw")}))
    line = one_error_line(done)
    url = f"redis://:***@127.0.0.1:{locked_redis.port}/0"
    assert f"Redis refused the password for {url} (--redis-url, {variable}): " in line
    assert "wrong-pw" not in done.stderr


def test_a_bad_scheme_is_a_usage_error_naming_the_variable_and_the_form_to_use() -> None:
    done = logrelay("catch", env=environment(LOGRELAY_CATCH_REDIS_URL="http://app:s3cret@127.0.0.1:6390/0"))
    line = one_error_line(done, 2)
    assert "unsupported Redis URL scheme 'http' in 'http://app:***@127.0.0.1:6390/0' " in line
    assert "(--redis-url, LOGRELAY_CATCH_REDIS_URL): use redis://[user:password@]host:port/db" in line
    assert "s3cret" not in done.stderr


def test_a_busy_health_port_stops_the_catcher_before_it_accepts_a_record(redis_server: RedisServer) -> None:
    health = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", health))
        taken.listen()
        done, accepted = catch_while_sending(redis_server.url, "--health-listen", f"127.0.0.1:{health}")
    line = one_error_line(done)
    assert line == f"Error: cannot listen on 127.0.0.1:{health} (--health-listen): Address already in use"
    assert accepted == 0


def test_a_misspelt_variable_is_a_warning_naming_the_nearest_and_the_settings_are_logged(
    locked_redis: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    env = environment(
        LOGRELAY_CATCH_REDIS_ULR="redis://127.0.0.1:1/0",  # misspelt: --redis-url comes from the command line
        LOGRELAY_CONSUME_FILE_OUTPUT="/var/log/central.log",  # another command's: no warning
        LOGRELAY_PURE_PYTHON=os.environ.get(speedups.SWITCH, ""),  # not an option, documented: no warning
    )
    url = with_password(locked_redis, PASSWORD)
    log_path = tmp_path / "catch.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "relay", "catch", "--listen", f"127.0.0.1:{port}", "--redis-url", url],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:

        def started() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the catcher exited with {process.returncode}: {log_path.read_text()}")
            return "catching on" in log_path.read_text()

        wait_until(started, timeout=60, what="the catcher's start line")
    finally:
        process.terminate()
        process.wait(timeout=60)
    lines = log_path.read_text().splitlines()
    warnings = [line for line in lines if " WARNING " in line]
    assert len(warnings) == 1, lines
    assert warnings[0].endswith(
        "LOGRELAY_CATCH_REDIS_ULR is not an option of logrelay catch; did you mean LOGRELAY_CATCH_REDIS_URL?"
    )
    (settings,) = [line for line in lines if "logrelay catch " in line and "--redis-url=" in line]
    assert f"--redis-url=redis://:***@127.0.0.1:{locked_redis.port}/0" in settings
    assert f"--listen=127.0.0.1:{port}" in settings
    assert PASSWORD not in log_path.read_text()
    # The suite's own processes load the same tree with the same switch: the same code paths.
    assert f"logrelay catch {__version__}, {speedups.summary()}: " in settings


def test_a_password_changed_under_a_running_catcher_keeps_its_records_until_it_is_fixed(
    locked_redis: RedisServer, catcher_factory: Callable[..., CatcherProcess]
) -> None:
    health = free_port()
    catcher = catcher_factory(with_password(locked_redis, PASSWORD), "--health-listen", f"127.0.0.1:{health}")
    readyz = f"http://127.0.0.1:{health}/readyz"
    wait_until(lambda: http_get(readyz) == (200, "ready\n"), timeout=60, what="catcher ready")
    with locked_redis.client() as client:
        client.config_set("requirepass", "rotated-pw")
        client.client_kill_filter(_type="normal", skipme=True)  # the catcher must log in again
    wait_until(lambda: http_get(readyz) == (503, "Redis refused the password\n"), timeout=60, what="not ready")
    with stock_logger("rotated", catcher.port) as logger:
        for seq in range(RECORDS):
            logger.warning("record %d", seq)
    received = "logrelay_catcher_records_received_total"
    wait_until(lambda: scraped(health)[received] == RECORDS, timeout=60, what="the records accepted")
    assert catcher.running()
    assert f"Redis refused the password for redis://:***@127.0.0.1:{locked_redis.port}/0: " in catcher.log
    with redis.Redis(port=locked_redis.port, password="rotated-pw", socket_timeout=10) as client:
        assert read_stream(client) == []
        client.config_set("requirepass", PASSWORD)
    with locked_redis.client() as client:
        entries = wait_for_entries(client, RECORDS, timeout=60)
    assert sorted(json.loads(fields[b"record"])["msg"] for _, fields in entries) == sorted(
        f"record {seq}" for seq in range(RECORDS)
    )
    assert catcher.stop() == 0
