"""CatcherServer's upkeep loops and readiness reasons, against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from relay.common.addresses import ListenAddress
from relay.common.health import Readiness
from relay.common.redis_client import RedisSettings
from relay.server import CatcherServer
from relay.settings import CatcherSettings
from tests.support.polling import async_wait_until
from tests.support.realredis import RedisServer


class CancelledAsItAnswers(Redis):
    """A client whose PING reply and the cancellation of the task that asked arrive together."""

    target: asyncio.Task[None] | None = None

    async def ping(self, **kwargs: object) -> bool:  # type: ignore[override]
        answer = await super().ping()
        if self.target is not None:
            asyncio.get_running_loop().call_soon(self.target.cancel)
            self.target = None
        return answer  # type: ignore[no-any-return]


async def test_the_readiness_check_ends_when_cancelled_as_the_reply_arrives(redis_server: RedisServer) -> None:
    client = CancelledAsItAnswers.from_url(redis_server.url)
    server = CatcherServer(CatcherSettings(redis=RedisSettings(redis_server.url)), redis=client)
    try:
        task = asyncio.create_task(server._check_redis())
        client.target = task
        with pytest.raises(asyncio.CancelledError):
            # Before the fix: asyncio.wait_for (3.11) returned the reply and dropped the cancellation,
            # and the loop pinged on after shutdown (reopening the closed client's connection).
            await asyncio.wait_for(task, 10)
    finally:
        await client.aclose()


@pytest.fixture
async def catcher(redis_server: RedisServer) -> AsyncIterator[Callable[..., Awaitable[CatcherServer]]]:
    """Start CatcherServers on this test's loop, on a free port; each is shut down at teardown."""
    started: list[CatcherServer] = []

    async def start(**settings: Any) -> CatcherServer:
        server = CatcherServer(
            CatcherSettings(
                listen=ListenAddress.parse("127.0.0.1:0"), redis=RedisSettings(redis_server.url), **settings
            )
        )
        started.append(server)
        await server.start()
        return server

    yield start
    for server in started:
        server.request_stop()
        await server.shutdown()


def record(n: int) -> bytes:
    return b'{"msg": "record %d"}' % n


async def test_a_full_stream_names_the_group_that_holds_it_not_redis(
    catcher: Callable[..., Awaitable[CatcherServer]], redis: Redis
) -> None:
    await redis.xgroup_create("logrelay", "leftover", "$", mkstream=True)
    server = await catcher(max_stream_length=5, batch_max_records=5)
    server.publisher.add_records([record(n) for n in range(8)], "10.0.0.1:5000", "1")
    full = Readiness(False, "stream full (5 entries): group 'leftover' holds 5 entries (no consumer)")
    await async_wait_until(lambda: server.readiness() == full, timeout=30, what="readiness naming the group")
    await redis.xtrim("logrelay", maxlen=0, approximate=False)  # what a consumer's trimming would do
    await async_wait_until(lambda: server.readiness() == Readiness(True, "ready"), timeout=30, what="ready again")
    assert await redis.xlen("logrelay") == 3


async def test_a_publish_that_redis_refuses_is_named_with_its_error(
    catcher: Callable[..., Awaitable[CatcherServer]], redis: Redis
) -> None:
    await redis.set("logrelay", "not a stream")
    server = await catcher()
    server.publisher.add_records([record(0)], "10.0.0.1:5000", "1")
    refused = Readiness(
        False, "cannot publish to Redis (ResponseError: WRONGTYPE key logrelay is a string, not a stream)"
    )
    await async_wait_until(lambda: server.readiness() == refused, timeout=30, what="readiness naming the error")
    await redis.delete("logrelay")
    await async_wait_until(lambda: server.readiness() == Readiness(True, "ready"), timeout=30, what="ready again")
