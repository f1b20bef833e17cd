"""Fixtures for the consumer tests: FileConsumers on a test's own redis-server."""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from consumers.fileconsumer import FileConsumer, FileConsumerSettings
from relay.settings import RedisSettings
from tests.realredis import RedisServer

ConsumerFactory = Callable[..., Awaitable[FileConsumer]]


@pytest.fixture
async def consumer_factory(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[ConsumerFactory]:
    """Makes JSON-lines FileConsumers holding their file (tmp_path / "central.log"), opened, not running.

    Keyword arguments override FileConsumerSettings (``shares_loop`` goes to
    FileConsumer).  On teardown each one
    finishes its syncs and acknowledgements, releases the file and closes its
    Redis connection.
    """
    made: list[tuple[FileConsumer, Redis]] = []

    async def make(*, shares_loop: bool = False, **overrides: object) -> FileConsumer:
        settings = FileConsumerSettings(
            tmp_path / "central.log",
            RedisSettings(redis_server.url),
            **{"format": "json", **overrides},  # type: ignore[arg-type]
        )
        redis = Redis.from_url(redis_server.url)
        consumer = FileConsumer(settings, redis, shares_loop=shares_loop)
        made.append((consumer, redis))
        assert consumer.sink.try_lock()
        consumer.sink.open()
        return consumer

    yield make
    for consumer, redis in made:
        await consumer.commits.drained()  # the last batches' sync and XACK, off the write path
        await consumer.commits.close()
        consumer.sink.close()
        await redis.aclose()


@pytest.fixture
async def consumer(consumer_factory: ConsumerFactory) -> FileConsumer:
    """A JSON-lines FileConsumer with the default settings (see consumer_factory)."""
    return await consumer_factory()


def written(consumer: FileConsumer) -> list[int]:
    """The ``n`` of every JSON line in the consumer's file, in file order."""
    return [json.loads(line)["n"] for line in consumer.settings.output.read_bytes().splitlines()]


class HeldFsync:
    """``os.fsync`` as a slow disk on demand: each call waits, in its thread, until released, then really syncs.

    ``lose_first``: the first call instead fails with EIO after the kernel
    "dropped" the unsynced pages (the file is cut back to ``lose_first``
    bytes), as a failed write-back may do.
    """

    real = staticmethod(os.fsync)

    def __init__(self, *, held: bool = True, lose_first: int | None = None) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        if not held:
            self.release.set()
        self.lose_first = lose_first

    def __call__(self, fd: int) -> None:
        self.entered.set()
        if self.lose_first is not None:
            keep, self.lose_first = self.lose_first, None
            os.ftruncate(fd, keep)
            raise OSError(errno.EIO, "Input/output error")
        assert self.release.wait(30), "never released"
        self.real(fd)
