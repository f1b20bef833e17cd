"""A real ``redis-server`` per test, on a free port, that the test may stop, pause or restart."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import redis

from tests.support.polling import wait_until


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections' source ports."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A loopback port no one listens on, outside the kernel's ephemeral range.

    A port the kernel hands out for ``bind(0)`` comes from the same range as
    the source ports of outgoing connections: between this check and the
    server's bind, a client connecting to Redis may take it as its source
    port, and the server fails with "Address already in use" (seen in CI with
    haproxy). Ports below the ephemeral range are only ever taken by listeners.
    """
    low = _ephemeral_low()
    # Where there is no room below the range, the kernel's choice.
    choose = (lambda: random.randrange(20000, low)) if low > 21000 else (lambda: 0)
    for _ in range(200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", choose()))
            except OSError:
                continue
            port: int = sock.getsockname()[1]
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: .ci/run installs it (apt-get install redis-server)")
    return binary


class RedisServer:
    """One redis-server process owned by a test.

    Data lives in ``directory``; with ``appendonly`` it survives :meth:`restart`.
    """

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        appendonly: bool = False,
        extra_args: tuple[str, ...] = (),
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra_args = extra_args
        # Credentials this test harness itself uses (ACL tests).
        self.username = username
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--logfile", str(self.directory / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, timeout=10, what=f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}")
        try:
            with redis.Redis(
                port=self.port, socket_timeout=0.5, username=self.username, password=self.password
            ) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=10, username=self.username, password=self.password)

    def pause(self) -> None:
        """SIGSTOP: the process holds its sockets open and answers nothing."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.paused:
            self.resume()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
