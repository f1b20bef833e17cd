"""HAProxy (Debian's package) as a real process, running the shipped deploy/haproxy.cfg."""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

from tests.support.polling import wait_until
from tests.support.realredis import free_port

SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"


#: The catchers' ports in the shipped configuration's server templates: SocketHandler, syslog, HTTP.
TEMPLATE_PORTS = {"socket": 9020, "syslog": 5514, "http": 8080}


def local_config(catchers: list[tuple[int, int]], inputs: list[dict[str, int]] | None = None) -> str:
    """The shipped configuration with Docker's DNS templates swapped for local catchers.

    ``catchers`` holds (traffic port, health port) pairs; ``inputs``, one per
    catcher, its "syslog" and "http" ports (a backend whose input a catcher
    does not have gets no server).  Everything else — TCP mode, the balance,
    the /readyz check, PROXY v2, timeouts — is the file compose.yaml mounts.
    """
    text = SHIPPED_CONFIG.read_text()
    for kind, template_port in TEMPLATE_PORTS.items():
        template = next(
            line
            for line in text.splitlines()
            if line.strip().startswith("server-template") and f"catcher:{template_port} " in line
        )
        servers = []
        for n, (port, health) in enumerate(catchers, 1):
            local = port if kind == "socket" else (inputs[n - 1].get(kind) if inputs else None)
            if local is not None:
                servers.append(f"    server catcher{n} 127.0.0.1:{local} check port {health}")
        text = text.replace(template, "\n".join(servers))
    return text


class HAProxyProcess:
    def __init__(self, config: str, directory: Path) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.path.exists(binary):
            raise RuntimeError("haproxy is not installed: .ci/run installs Debian's package")
        self.port = free_port()
        self.stats_port = free_port()
        self.syslog_port = free_port()
        self.http_port = free_port()
        self.config_path = directory / "haproxy.cfg"
        self.config_path.write_text(config)
        self.log_path = directory / "haproxy.log"
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HAProxyProcess:
        env = {
            **os.environ,
            "LOGRELAY_LB_BIND": f"127.0.0.1:{self.port}",
            "LOGRELAY_LB_STATS": f"127.0.0.1:{self.stats_port}",
            "LOGRELAY_LB_SYSLOG_BIND": f"127.0.0.1:{self.syslog_port}",
            "LOGRELAY_LB_HTTP_BIND": f"127.0.0.1:{self.http_port}",
        }
        with self.log_path.open("ab") as log:
            # -db: stay in the foreground; -W: master-worker, SIGTERM stops both.
            self.process = subprocess.Popen(
                [self.binary, "-db", "-f", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        wait_until(self._listening, timeout=15, what="haproxy listening")
        return self

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"haproxy exited with {self.process.returncode}:\n{self.log_path.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", self.stats_port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def server_states(self, backend: str = "catchers") -> dict[str, str]:
        """Each server's status (UP, DOWN, ...) in ``backend``, from the stats page's CSV."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/;csv", timeout=5) as response:
            text = response.read().decode().lstrip("# ")
        return {
            row["svname"]: row["status"]
            for row in csv.DictReader(io.StringIO(text))
            if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
