"""Fixtures shared by every test: real processes on free ports, always cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.catcherproc import CatcherProcess
from tests.realredis import RedisServer


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
def catcher_factory(tmp_path: Path) -> Iterator[Callable[..., CatcherProcess]]:
    """Start ``logrelay catch`` processes; each is killed at teardown if still running."""
    catchers: list[CatcherProcess] = []

    def start(redis_url: str, *extra_args: str, wait_listening: bool = True) -> CatcherProcess:
        catcher = CatcherProcess(redis_url, list(extra_args), tmp_path / f"catcher-{len(catchers)}.log")
        catchers.append(catcher)
        catcher.start(wait_listening=wait_listening)
        return catcher

    yield start
    for catcher in catchers:
        catcher.kill()
