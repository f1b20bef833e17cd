"""``logrelay tail -f`` as a process: records from real SocketHandlers through a catcher, Ctrl-C, a closed pipe."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from relay.common import speedups
from tests.support.clients import stock_logger
from tests.support.entries import entry_for
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess
from tests.support.realredis import RedisServer

pytestmark = pytest.mark.integration

CatcherFactory = Callable[..., CatcherProcess]


class TailProcess:
    """``python -m relay tail ARGS`` with its stdout and stderr as pipes; killed at teardown if still running."""

    def __init__(self, *args: str) -> None:
        # No option from the environment (LOGRELAY_TAIL_...), but the speedups' switch, as tests.support.processes.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGRELAY_") or k == speedups.SWITCH}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relay", "tail", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self._unread = b""

    def lines(self, count: int, timeout: float = 15) -> list[str]:
        """The next ``count`` lines of its stdout; AssertionError if they do not come within ``timeout`` seconds."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while self._unread.count(b"\n") < count:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, remaining))
            if not ready:
                raise AssertionError(f"timed out waiting for {count} lines; got {self._unread!r}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"tail exited ({self.process.wait()}): {self.stderr()}")
            self._unread += chunk
        *wanted, self._unread = self._unread.split(b"\n", count)
        return [line.decode() for line in wanted]

    def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=15)

    def stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read().decode(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def tail_factory() -> Iterator[Callable[..., TailProcess]]:
    started: list[TailProcess] = []

    def start(*args: str) -> TailProcess:
        started.append(TailProcess(*args))
        return started[-1]

    yield start
    for tail in started:
        tail.kill()


def add_entries(server: RedisServer, messages: list[str]) -> list[bytes]:
    """XADD one entry per message in the catcher's layout (INFO records of app.seed); their ids."""
    with server.client() as client:
        return [
            client.xadd(
                "logrelay",
                entry_for(logging.LogRecord("app.seed", logging.INFO, "/seed.py", 1, text, (), None)),  # type: ignore[arg-type]
            )
            for text in messages
        ]


def test_follow_prints_what_real_socket_handlers_send_until_ctrl_c(
    redis_server: RedisServer, catcher_factory: CatcherFactory, tail_factory: Callable[..., TailProcess]
) -> None:
    ids = add_entries(redis_server, [f"old {n}" for n in range(12)])
    # A short timeout: each blocked XREAD must stay inside it while nothing comes (the catcher starting).
    tail = tail_factory("-f", "--format", "json", "--redis-url", redis_server.url, "--redis-timeout", "0.3")
    newest = [json.loads(line) for line in tail.lines(10)]
    assert [record["msg"] for record in newest] == [f"old {n}" for n in range(2, 12)]
    assert [record["logrelay"]["entry_id"] for record in newest] == [entry_id.decode() for entry_id in ids[2:]]

    catcher = catcher_factory(redis_server.url)
    with stock_logger("app.sender", catcher.port) as sender:
        for n in range(5):
            sender.error("new %d from %s", n, "a stock SocketHandler")
    arrived = [json.loads(line) for line in tail.lines(5)]
    assert [record["msg"] for record in arrived] == [f"new {n} from a stock SocketHandler" for n in range(5)]
    assert {record["levelname"] for record in arrived} == {"ERROR"}
    assert {record["name"] for record in arrived} == {"app.sender"}
    assert all(record["logrelay"]["client"].startswith("127.0.0.1:") for record in arrived)

    assert tail.stop(signal.SIGINT) == 0
    assert tail.stderr() == ""  # quietly: no traceback, no KeyboardInterrupt
    with redis_server.client() as client:
        assert client.xinfo_groups("logrelay") == []


def test_n_0_follows_only_new_records_with_filters_and_sigterm_ends_it(
    redis_server: RedisServer, tail_factory: Callable[..., TailProcess]
) -> None:
    add_entries(redis_server, ["before the tail started"])
    tail = tail_factory("-n", "0", "-f", "--grep", "^keep", "--format", "%(message)s", "--redis-url", redis_server.url)
    # Entries are added until the tail prints one: it may still be starting when the first come, and a tail
    # started after them would (rightly) not print them.
    added = 0

    def printed_one() -> bool:
        nonlocal added
        add_entries(redis_server, [f"drop {added}", f"keep {added}"])
        added += 1
        assert tail.process.stdout is not None
        return bool(select.select([tail.process.stdout.fileno()], [], [], 0.05)[0])

    wait_until(printed_one, timeout=15, what="a first line from tail -n 0 -f")
    first = int(tail.lines(1)[0].split()[1])
    assert tail.lines(added - 1 - first) == [f"keep {n}" for n in range(first + 1, added)]
    assert tail.stop(signal.SIGTERM) == 0
    assert tail.stderr() == ""


def test_a_closed_pipe_ends_the_tail_quietly(
    redis_server: RedisServer, tail_factory: Callable[..., TailProcess]
) -> None:
    add_entries(redis_server, [f"line {n}" for n in range(3)])
    # logrelay tail -f | head -3
    tail = tail_factory("-f", "--format", "%(message)s", "--redis-url", redis_server.url)
    assert tail.lines(3) == ["line 0", "line 1", "line 2"]
    assert tail.process.stdout is not None
    tail.process.stdout.close()
    # The tail learns of it at its next write: give it records until it has gone.
    wait_until(
        lambda: add_entries(redis_server, ["one more"]) and tail.process.poll() is not None,
        timeout=15,
        what="tail ending on a closed pipe",
    )
    assert tail.process.returncode == 0
    assert tail.stderr() == ""  # no BrokenPipeError, no "Exception ignored"
