"""Real high-availability Redis setups for tests: a Sentinel group and a Redis Cluster, on free loopback ports.

Each is a set of :class:`~tests.support.realredis.RedisServer` processes (and
Sentinels) owned by one test: :meth:`start` returns once failover would work
(the Sentinels know each other and the replica; every cluster node says
``cluster_state:ok``), :meth:`stop` ends every process it started, by PID,
whatever state it left them in.  Use them through the ``sentinel_group`` and
``redis_cluster`` fixtures (tests/conftest.py), which always call :meth:`stop`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import redis
import redis.crc

from tests.support.polling import wait_until
from tests.support.realredis import RedisServer, free_port, redis_server_binary

#: Failure detection: Sentinels call a master down after this long; cluster nodes a node.
DOWN_AFTER_MS = 1000


def redis_cli_binary() -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        raise RuntimeError("redis-cli is not installed: .ci/run installs it (apt-get install redis-tools)")
    return binary


def _info(port: int, section: str) -> dict[str, str]:
    """INFO ``section`` of the server on ``port`` as text pairs ({} if it does not answer)."""
    try:
        with redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
            info = client.info(section)
    except (redis.ConnectionError, redis.TimeoutError):
        return {}
    return {name: str(value) for name, value in info.items()}


class Sentinel:
    """One ``redis-server CONF --sentinel`` process, its config file generated in ``directory``."""

    def __init__(self, directory: Path, service: str, master_port: int) -> None:
        self.directory = directory
        self.port = free_port()
        self.service = service
        self.master_port = master_port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Sentinel:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "sentinel.conf"
        # Sentinel rewrites this file as it learns: it must be its own and writable.
        config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.directory}\n"
            f"logfile {self.directory / 'sentinel.log'}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master_port} 2\n"
            f"sentinel down-after-milliseconds {self.service} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {self.service} 3000\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        self.process = subprocess.Popen(
            [redis_server_binary(), str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5, decode_responses=True)

    def master_state(self) -> dict[str, str] | None:
        """What this Sentinel says of the service (SENTINEL MASTER), None if it does not answer."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"sentinel on port {self.port} exited with {self.process.returncode}")
        try:
            with self.client() as client:
                state = client.sentinel_master(self.service)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return None
        return {name: str(value) for name, value in state.items()}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


class SentinelGroup:
    """A master, one replica (``--replicaof``) and three Sentinels (quorum 2) watching them as ``service``."""

    def __init__(self, directory: Path, service: str = "logrelay-ha") -> None:
        self.directory = directory
        self.service = service
        self.master = RedisServer(directory / "node-0", extra_args=("--repl-diskless-sync-delay", "0"))
        replica_args = ("--replicaof", "127.0.0.1", str(self.master.port), "--repl-diskless-sync-delay", "0")
        self.replica = RedisServer(directory / "node-1", extra_args=replica_args)
        self.sentinels = [Sentinel(directory / f"sentinel-{n}", service, self.master.port) for n in range(3)]

    @property
    def nodes(self) -> list[RedisServer]:
        return [self.master, self.replica]

    @property
    def url(self) -> str:
        """``redis+sentinel://`` URL of the service, database 0."""
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def start(self, timeout: float = 30) -> SentinelGroup:
        """Start everything; return once the replica is in sync and each Sentinel knows the replica and the others."""
        self.master.start()
        self.replica.start()
        wait_until(
            lambda: _info(self.replica.port, "replication").get("master_link_status") == "up",
            timeout=timeout,
            what="the replica's first sync",
        )
        for sentinel in self.sentinels:
            sentinel.start()

        def ready(sentinel: Sentinel) -> bool:
            state = sentinel.master_state()
            return bool(state) and state["num-slaves"] == "1" and state["num-other-sentinels"] == "2"

        # Sentinels find each other through hello messages every 2 s: without that, no quorum.
        wait_until(lambda: all(ready(s) for s in self.sentinels), timeout=timeout, what="the Sentinels to agree")
        return self

    def master_port(self) -> int | None:
        """The master's port as the first answering Sentinel names it."""
        for sentinel in self.sentinels:
            if sentinel.process is None:
                continue
            try:
                with sentinel.client() as client:
                    address = client.sentinel_get_master_addr_by_name(self.service)
            except (redis.ConnectionError, redis.TimeoutError):
                continue
            if address:
                return int(address[1])
        return None

    def node_at(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def current_master(self) -> RedisServer:
        port = self.master_port()
        assert port is not None, "no Sentinel names a master"
        return self.node_at(port)

    def wait_for_new_master(self, old: RedisServer, timeout: float = 30) -> RedisServer:
        """Wait until every running Sentinel names another master than ``old`` and that node says it is master."""

        def promoted() -> RedisServer | None:
            ports = set()
            for sentinel in self.sentinels:
                state = sentinel.master_state() if sentinel.process is not None else None
                if state is None:
                    return None
                ports.add(int(state["port"]))
            if len(ports) != 1 or old.port in ports:
                return None
            new = self.node_at(ports.pop())
            return new if _info(new.port, "replication").get("role") == "master" else None

        return wait_until(promoted, timeout=timeout, what=f"the Sentinels to promote a new master after {old.port}")

    def wait_for_role(self, node: RedisServer, role: str, timeout: float = 30) -> None:
        wait_until(
            lambda: _info(node.port, "replication").get("role") == role,
            timeout=timeout,
            what=f"port {node.port} to be a {role}",
        )

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for node in self.nodes:
            node.stop(signal.SIGKILL)


class ClusterNodes:
    """Six ``--cluster-enabled`` nodes, made three masters with a replica each by ``redis-cli --cluster create``."""

    def __init__(self, directory: Path, size: int = 6) -> None:
        self.directory = directory
        args = (
            "--cluster-enabled", "yes",
            "--cluster-node-timeout", str(DOWN_AFTER_MS),
            "--cluster-config-file", "nodes.conf",
            # A replica's first sync starts at once (the default waits 5 s for more replicas)...
            "--repl-diskless-sync-delay", "0",
            # ... and a replica may take over however long ago it last heard from its master.
            "--cluster-replica-validity-factor", "0",
        )  # fmt: skip
        # The bus port is its own free port (Redis 7's cluster-port): the default, port + 10000,
        # may fall in the kernel's ephemeral range, where a client's source port can hold it.
        self.nodes = [
            RedisServer(directory / f"node-{n}", extra_args=(*args, "--cluster-port", str(free_port())))
            for n in range(size)
        ]

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL listing every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self, timeout: float = 30) -> ClusterNodes:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [redis_cli_binary(), "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
        self.wait_ok(timeout)
        # Only a replica that has synced can be promoted.
        wait_until(
            lambda: all(
                info.get("role") == "master" or info.get("master_link_status") == "up"
                for info in (_info(node.port, "replication") for node in self.nodes)
            ),
            timeout=timeout,
            what="every replica's first sync",
        )
        return self

    def live(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.process is not None and not node.paused]

    def wait_ok(self, timeout: float = 30) -> None:
        """Wait until every running node says ``cluster_state:ok`` and they agree on who serves what."""

        def ok() -> bool:
            live = self.live()
            if any(_info(node.port, "cluster").get("cluster_enabled") != "1" for node in live):
                return False
            states = [self._cluster_info(node).get("cluster_state") for node in live]
            return all(state == "ok" for state in states) and len({self._slot_owners(n) for n in live}) == 1

        wait_until(ok, timeout=timeout, what="cluster_state:ok on every node")

    @staticmethod
    def _cluster_info(node: RedisServer) -> dict[str, str]:
        try:
            with redis.Redis(port=node.port, socket_timeout=0.5, decode_responses=True) as client:
                text = client.execute_command("CLUSTER", "INFO", parse="RAW")
        except (redis.ConnectionError, redis.TimeoutError):
            return {}
        text = text.decode() if isinstance(text, bytes) else text
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    @staticmethod
    def _slot_owners(node: RedisServer) -> tuple[tuple[int, int, int], ...]:
        """(first slot, last slot, master port) of each range, as ``node`` sees them."""
        try:
            with redis.Redis(port=node.port, socket_timeout=0.5) as client:
                ranges = client.execute_command("CLUSTER", "SLOTS", parse="RAW")
        except (redis.ConnectionError, redis.TimeoutError):
            return ()
        return tuple(sorted((int(r[0]), int(r[1]), int(r[2][1])) for r in ranges))

    def node_at(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def master_for(self, key: str) -> RedisServer:
        """The node that serves ``key``'s hash slot, as the first answering node says."""
        slot = redis.crc.key_slot(key.encode())
        for node in self.live():
            for first, last, port in self._slot_owners(node):
                if first <= slot <= last:
                    return self.node_at(port)
        raise AssertionError(f"no live node serves slot {slot}")

    def wait_for_promotion(self, old: RedisServer, key: str, timeout: float = 30) -> RedisServer:
        """Wait until another node than ``old`` serves ``key``'s slot and the cluster is ok again; return it."""

        def promoted() -> RedisServer | None:
            try:
                new = self.master_for(key)
            except AssertionError:
                return None
            if new is old or _info(new.port, "replication").get("role") != "master":
                return None
            return new

        new = wait_until(promoted, timeout=timeout, what=f"a replica of {old.port} to be promoted")
        self.wait_ok(timeout)
        return new

    def stop(self) -> None:
        for node in self.nodes:
            node.stop(signal.SIGKILL)
