"""``logrelay up``: a catcher and the file consumer in one process.

The same :class:`CatcherServer` and :class:`FileConsumer` as the separate
commands, sharing one event loop.  With no Redis URL they share an embedded,
in-memory broker (fakeredis, running the same Lua script), so a machine with
nothing else installed gets a central log server from one command.

Embedded mode keeps the stream in this process's memory: a crash of the
process loses the records not yet in the file (the file itself stays whole:
no torn or doubled line).  Point ``--redis-url`` at a Redis for the full
guarantees.

Stopping: the catcher drains and publishes first; the consumer then writes
everything published and exits.  A second signal stops both at once.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

from consumers.fileconsumer import FileConsumer, FileConsumerSettings
from relay.lifecycle import serve_with_signals
from relay.server import CatcherServer
from relay.settings import CatcherSettings

__all__ = ["EMBEDDED_BROKER", "UpRunner", "embedded_redis"]

log = logging.getLogger("logrelay.up")

#: What the logs call the in-process broker, in place of a Redis URL.
EMBEDDED_BROKER = "embedded:in-process"


def embedded_redis() -> Redis:
    """An in-process Redis (fakeredis with Lua) for a zero-install start."""
    import fakeredis  # only ``up`` without --redis-url needs it

    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=False)


class UpRunner:
    def __init__(self, catcher: CatcherSettings, consumer: FileConsumerSettings, *, embedded: bool) -> None:
        self.embedded = embedded
        shared = embedded_redis() if embedded else None
        self.catcher = CatcherServer(catcher, redis=shared)
        self.consumer = FileConsumer(consumer, redis=shared, shares_loop=True)
        self._signals = 0

    def _on_signal(self) -> None:
        self._signals += 1
        self.catcher.request_stop()  # a second request forces the catcher
        if self._signals > 1:
            self.consumer.request_stop()

    async def serve(self) -> int:
        """Run both until a stop signal (see the module docstring); return the exit code."""
        return await serve_with_signals(self.run, self._on_signal)

    async def run(self) -> int:
        if self.embedded:
            log.warning("no --redis-url: using the embedded in-memory broker (records in flight die with this process)")
        consumer_task = asyncio.create_task(self.consumer.run(), name="consumer")
        catcher_task = asyncio.create_task(self.catcher.run(), name="catcher")
        try:
            await asyncio.wait({consumer_task, catcher_task}, return_when=asyncio.FIRST_COMPLETED)
            if consumer_task.done() and not catcher_task.done():
                # The consumer failed (its error is raised below): stop taking records.
                self.catcher.request_stop()
            catcher_code = await catcher_task
            # Everything accepted is published: write it all, then stop.
            self.consumer.request_stop(when_caught_up=self._signals < 2)
            consumer_code = await consumer_task
            return catcher_code or consumer_code
        finally:
            for task in (consumer_task, catcher_task):
                task.cancel()
