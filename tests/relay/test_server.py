"""CatcherServer's upkeep loops, against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from relay.common.redis_client import RedisSettings
from relay.server import CatcherServer
from relay.settings import CatcherSettings
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
