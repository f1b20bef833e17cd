"""Fixtures shared by every test: real processes on free ports, always cleaned up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.support.processes import CatcherProcess, ConsumerProcess, LogrelayProcess
from tests.support.realredis import RedisServer


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-servers for this test; each is stopped at teardown, by PID."""
    servers: list[RedisServer] = []

    def start(*, appendonly: bool = False, port: int | None = None, started: bool = True) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", port=port, appendonly=appendonly)
        servers.append(server)
        return server.start() if started else server

    yield start
    for server in servers:
        server.stop()


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
