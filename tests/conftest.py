"""Fixtures shared by every test: real processes on free ports, always cleaned up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.support.ha import ClusterNodes, SentinelGroup
from tests.support.processes import CatcherProcess, ConsumerProcess, LogrelayProcess
from tests.support.realredis import RedisServer


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-servers for this test; each is stopped at teardown, by PID."""
    servers: list[RedisServer] = []

    def start(
        *, appendonly: bool = False, port: int | None = None, started: bool = True, extra_args: tuple[str, ...] = ()
    ) -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        server = RedisServer(directory, port=port, appendonly=appendonly, extra_args=extra_args)
        servers.append(server)
        return server.start() if started else server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sentinel_group_factory(tmp_path: Path) -> Iterator[Callable[..., SentinelGroup]]:
    """Start Sentinel groups (a master, a replica, three Sentinels) for this test; all stopped at teardown.

    ``start(service="logrelay-ha")`` returns a :class:`SentinelGroup` ready to fail over; its ``url`` is
    the ``redis+sentinel://`` URL.  Its processes are killed at teardown, also when ``start`` failed midway.
    """
    groups: list[SentinelGroup] = []

    def start(service: str = "logrelay-ha") -> SentinelGroup:
        group = SentinelGroup(tmp_path / f"sentinel-group-{len(groups)}", service)
        groups.append(group)
        return group.start()

    yield start
    for group in groups:
        group.stop()


@pytest.fixture
def sentinel_group(sentinel_group_factory: Callable[..., SentinelGroup]) -> SentinelGroup:
    return sentinel_group_factory()


@pytest.fixture
def redis_cluster_factory(tmp_path: Path) -> Iterator[Callable[[], ClusterNodes]]:
    """Start Redis Clusters (six nodes: three masters, a replica each) for this test; all killed at teardown."""
    clusters: list[ClusterNodes] = []

    def start() -> ClusterNodes:
        cluster = ClusterNodes(tmp_path / f"cluster-{len(clusters)}")
        clusters.append(cluster)
        return cluster.start()

    yield start
    for cluster in clusters:
        cluster.stop()


@pytest.fixture
def redis_cluster(redis_cluster_factory: Callable[[], ClusterNodes]) -> ClusterNodes:
    return redis_cluster_factory()


@pytest.fixture
def redis_server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_server_factory()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """An asyncio client of this test's own redis-server, closed at teardown."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def processes() -> Iterator[list[LogrelayProcess]]:
    """Every logrelay process a test starts; each is killed at teardown if still running."""
    started: list[LogrelayProcess] = []
    yield started
    for process in started:
        process.kill()


@pytest.fixture
def catcher_factory(tmp_path: Path, processes: list[LogrelayProcess]) -> Callable[..., CatcherProcess]:
    """Start ``logrelay catch`` processes (``command="up"`` for ``logrelay up``)."""

    def start(
        redis_url: str, *extra_args: str, wait_listening: bool = True, command: str = "catch", port: int | None = None
    ) -> CatcherProcess:
        log_path = tmp_path / f"{command}-{len(processes)}.log"
        catcher = CatcherProcess(redis_url, list(extra_args), log_path, command=command, port=port)
        processes.append(catcher)
        catcher.start(wait_listening=wait_listening)
        return catcher

    return start


@pytest.fixture
def consumer_factory(tmp_path: Path, processes: list[LogrelayProcess]) -> Callable[..., ConsumerProcess]:
    """Start ``logrelay consume file`` processes writing ``output``."""

    def start(redis_url: str, output: Path, *extra_args: str, wait_ready: bool = True) -> ConsumerProcess:
        consumer = ConsumerProcess(redis_url, output, list(extra_args), tmp_path / f"consumer-{len(processes)}.log")
        processes.append(consumer)
        consumer.start(wait_ready=wait_ready)
        return consumer

    return start
