"""Fixtures for the consumer tests: FileConsumers on a test's own redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from consumers.file_consumer import FileConsumer
from consumers.settings import FileConsumerSettings
from relay.common.redis_client import RedisSettings
from tests.support.file_consumers import ConsumerFactory
from tests.support.realredis import RedisServer


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
