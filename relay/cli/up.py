"""``logrelay up``: a catcher and the file consumer in one process.

The same :class:`CatcherServer` and :class:`FileConsumer` as the separate
commands, sharing one event loop.  With no Redis URL they share an embedded,
in-memory broker (fakeredis, running the same Lua script), so a machine with
nothing else installed gets a central log server from one command.

Embedded mode keeps the stream in this process's memory: a crash of the
process loses the records not yet in the file (the file itself stays whole:
no torn or doubled line).  Its dead letters are copied as they come into
``<output>.dead-letters.jsonl`` (:mod:`relay.dead_letter_file`), which
outlives the process.  Point ``--redis-url`` at a Redis for the full
guarantees.

Stopping: the catcher drains and publishes first; the consumer then writes
everything published and exits.  A second signal stops both at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import click
from redis.asyncio import Redis

from consumers.file_consumer import FileConsumer
from consumers.settings import FileConsumerSettings
from relay.cli.config_show import log_effective_settings
from relay.cli.consume import FILE_OPTIONS, file_consumer_settings, format_usage_errors
from relay.cli.options import (
    CATCHER_OPTIONS,
    DEAD_LETTER_LENGTH_OPTION,
    LOG_OPTIONS,
    STREAM_OPTIONS,
    catcher_settings,
    configure_logging,
    redis_settings,
    with_options,
)
from relay.common.health import HealthServer, all_ready
from relay.common.metrics import new_registry
from relay.common.redis_client import RedisSettings
from relay.common.signals import run_command, serve_with_signals
from relay.dead_letter_file import DeadLetterFile, dead_letter_path
from relay.server import CatcherServer
from relay.settings import CatcherSettings

__all__ = ["EMBEDDED_BROKER", "SingleProcessRelay", "embedded_redis", "up"]

log = logging.getLogger("logrelay.up")

#: What the logs call the in-process broker, in place of a Redis URL.
EMBEDDED_BROKER = "embedded:in-process"


def embedded_redis() -> Redis:
    """An in-process Redis (fakeredis with Lua) for a zero-install start."""
    import fakeredis  # only ``up`` without --redis-url needs it

    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=False)


class SingleProcessRelay:
    """A catcher and a file consumer sharing one event loop (and, embedded, one in-process broker).

    The catcher's ``health_listen`` is the process's one endpoint: /readyz is
    ready when both halves are (else the first reason, naming the half),
    /metrics serves both from one registry.
    """

    def __init__(self, catcher: CatcherSettings, consumer: FileConsumerSettings, *, embedded: bool) -> None:
        self.embedded = embedded
        shared = embedded_redis() if embedded else None
        registry = new_registry()
        health_listen = catcher.health_listen or consumer.health_listen
        # Each half would serve its own endpoint: this process serves one for both.
        catcher = dataclasses.replace(catcher, health_listen=None)
        consumer = dataclasses.replace(consumer, health_listen=None)
        self.catcher = CatcherServer(catcher, redis=shared, registry=registry)
        self.consumer = FileConsumer(consumer, redis=shared, shares_loop=True, registry=registry)
        # Embedded, the dead-letter stream dies with the process: its letters go to a file beside the output too.
        self.dead_letter_file = (
            DeadLetterFile(shared, catcher.keys.dead_letters, dead_letter_path(consumer.output))
            if shared is not None
            else None
        )
        readiness = all_ready({"catcher": self.catcher.readiness, "consumer": self.consumer.readiness})
        self.health = HealthServer(health_listen, readiness, registry) if health_listen else None
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
        else:
            # Before the health endpoint and either half: a refused login exits, nothing listens.
            await self.catcher.verify_redis()
        if self.health is not None:
            await self.health.start()
        consumer_task = asyncio.create_task(self.consumer.run(), name="consumer")
        catcher_task = asyncio.create_task(self.catcher.run(), name="catcher")
        copying = None
        if self.dead_letter_file is not None:
            copying = asyncio.create_task(self.dead_letter_file.run(), name="dead-letter file")
        try:
            await asyncio.wait({consumer_task, catcher_task}, return_when=asyncio.FIRST_COMPLETED)
            if consumer_task.done() and not catcher_task.done():
                # The consumer failed (its error is raised below): stop taking records.
                self.catcher.request_stop()
            catcher_code = await catcher_task
            # Everything accepted is published: write it all, then stop.
            self.consumer.request_stop(when_caught_up=self._signals < 2)
            consumer_code = await consumer_task
            if copying is not None and self.dead_letter_file is not None:
                # Both halves are done writing letters: copy the last of them, then stop.
                self.dead_letter_file.stop()
                await copying
            return catcher_code or consumer_code
        finally:
            for task in (consumer_task, catcher_task, copying):
                if task is not None:
                    task.cancel()
            if self.health is not None:
                await self.health.close()


@click.command()
@with_options(
    CATCHER_OPTIONS,
    [click.option("--redis-url", default=None, show_default="embedded broker", help="Redis URL; none: in-process.")],
    STREAM_OPTIONS,
    DEAD_LETTER_LENGTH_OPTION,
    FILE_OPTIONS,
    LOG_OPTIONS,
)
def up(**options: Any) -> None:
    """Run a catcher and the file consumer in one process: a central log server in one command."""
    configure_logging(options)
    log_effective_settings()

    def build() -> tuple[Callable[[], Coroutine[Any, Any, int]], str]:
        embedded = options["redis_url"] is None
        if embedded and options["wait_replicas"]:
            raise ValueError("--wait-replicas needs --redis-url: the embedded broker has no replicas")
        redis = RedisSettings(url=EMBEDDED_BROKER) if embedded else redis_settings(options)
        catcher = catcher_settings(options, redis)
        with format_usage_errors():
            consumer = file_consumer_settings(options, redis)
            relay = SingleProcessRelay(catcher, consumer, embedded=embedded)
        return relay.serve, f"cannot serve on {catcher.listen} into {consumer.output}"

    run_command(build)
