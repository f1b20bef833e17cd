"""logrelay commands as real child processes, the way a user runs them."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from relay.common import speedups
from tests.support.polling import wait_until
from tests.support.realredis import free_port


class LogrelayProcess:
    """``python -m relay ARGS``, its output in a log file, killed by PID when the test ends."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = [sys.executable, "-m", "relay", *args]
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        # No option comes from the environment (LOGRELAY_<COMMAND>_<OPTION>), but the
        # speedups' switch does: a pure-Python run's processes are pure Python too.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGRELAY_") or k == speedups.SWITCH}
        self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_running(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.args[3]} exited with {self.process.returncode}:\n{self.log}")

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


class CatcherProcess(LogrelayProcess):
    """``logrelay catch`` on a free port; :meth:`start` returns once it accepts connections."""

    def __init__(
        self, redis_url: str, extra_args: list[str], log_path: Path, *, command: str = "catch", port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.redis_url = redis_url
        args = [command, "--listen", f"127.0.0.1:{self.port}", "--stats-interval", "0", *extra_args]
        if redis_url:
            args += ["--redis-url", redis_url]
        super().__init__(args, log_path)

    def start(self, *, wait_listening: bool = True) -> None:
        super().start()
        if wait_listening:
            wait_until(self._listening, timeout=15, what=f"catcher listening on {self.port}")

    def final_stats(self) -> dict[str, int]:
        """The counters of the catcher's last "stopped:" log line (after it stopped)."""
        line = self.log.rsplit("stopped: ", 1)[1].splitlines()[0]
        return {key: int(value) for key, value in (pair.split("=") for pair in line.split())}

    def _listening(self) -> bool:
        self.check_running()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True


class ConsumerProcess(LogrelayProcess):
    """``logrelay consume file``; :meth:`start` returns once it writes or stands by."""

    def __init__(self, redis_url: str, output: Path, extra_args: list[str], log_path: Path) -> None:
        self.output = output
        super().__init__(
            ["consume", "file", "--redis-url", redis_url, "--output", str(output), "--block-ms", "200", *extra_args],
            log_path,
        )

    def start(self, *, wait_ready: bool = True) -> None:
        before = self.log.count("logrelay.consumer:")
        super().start()
        if wait_ready:
            wait_until(lambda: self._ready(before), timeout=15, what="consumer ready")

    def _ready(self, before: int) -> bool:
        self.check_running()
        return self.log.count("logrelay.consumer:") > before

    @property
    def writing(self) -> bool:
        """Whether this consumer holds the file (its last start got past the lock)."""
        tail = self.log.rsplit("standing by", 1)[-1]
        return "writing " in tail or "took over" in tail


def kill_at_random_moments(
    start: Callable[[], ConsumerProcess],
    senders: list[subprocess.Popen[bytes]],
    *,
    seed: int,
    kills: int,
    after_restart: Callable[[], object] = lambda: None,
    longest: float = 0.5,
    seconds: float = 60,
) -> ConsumerProcess:
    """Kill -9 the consumer ``start()`` makes and start it again, at random moments (up to ``longest``
    seconds apart), at least ``kills`` times and until every sender is done (within ``seconds``); return
    the last one, running.

    ``after_restart`` runs after each restart (a check of what the file holds).
    """
    rng = random.Random(seed)
    done = 0
    consumer = start()
    deadline = time.monotonic() + seconds
    while (done < kills or any(proc.poll() is None for proc in senders)) and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.05, longest))  # the crash schedule, not a wait for a condition
        consumer.kill()
        done += 1
        consumer = start()
        after_restart()
    assert done >= kills, f"only {done} kills in {seconds}s"
    return consumer
