"""``logrelay catch`` as a real child process, the way a user runs it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.polling import wait_until
from tests.realredis import free_port


class CatcherProcess:
    def __init__(self, redis_url: str, extra_args: list[str], log_path: Path) -> None:
        self.port = free_port()
        self.redis_url = redis_url
        self.extra_args = extra_args
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def args(self) -> list[str]:
        return [
            sys.executable, "-m", "relay", "catch",
            "--listen", f"127.0.0.1:{self.port}",
            "--redis-url", self.redis_url,
            "--stats-interval", "0",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, *, wait_listening: bool = True) -> None:
        log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGRELAY_")}
        self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        if wait_listening:
            wait_until(self._listening, timeout=15, what=f"catcher listening on {self.port}")

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"catcher exited with {self.process.returncode}:\n{self.log}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 60) -> int:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
