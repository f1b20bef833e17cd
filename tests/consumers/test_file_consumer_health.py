"""A running FileConsumer's readiness and metrics, against a real redis-server: /readyz's reasons, /metrics' figures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from consumers.file_consumer import FileConsumer
from consumers.group_watch import GroupWatch
from consumers.settings import FileConsumerSettings
from relay.common.addresses import ListenAddress
from relay.common.health import Readiness
from relay.common.redis_client import RedisSettings
from tests.support.polling import async_wait_until
from tests.support.realredis import RedisServer

STREAM = "logrelay"


async def get(port: int, path: str) -> tuple[int, str]:
    """One HTTP GET to the consumer's endpoint: status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def samples(text: str) -> dict[str, float]:
    """Unlabelled samples of a /metrics text, parsed as Prometheus would."""
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples if not s.labels}


async def add_records(redis: Redis, first: int, count: int) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(first, first + count):
            pipe.xadd(STREAM, {"v": "1", "record": f'{{"n":{n}}}', "client": "c", "catcher": "c1", "received": "1"})
        await pipe.execute()


class Running:
    """FileConsumers run as tasks on the test's loop, each with a health endpoint on a port of its own."""

    def __init__(self, redis_server: RedisServer, output: Path) -> None:
        self.redis_server = redis_server
        self.output = output
        self.tasks: list[tuple[FileConsumer, asyncio.Task[int]]] = []

    def start(self) -> FileConsumer:
        settings = FileConsumerSettings(
            self.output,
            RedisSettings(self.redis_server.url, socket_timeout=2.0),
            format="json",
            block_ms=100,
            health_listen=ListenAddress("127.0.0.1", 0),
        )
        consumer = FileConsumer(settings)
        self.tasks.append((consumer, asyncio.create_task(consumer.run())))
        return consumer

    async def stop(self, consumer: FileConsumer) -> int:
        consumer.request_stop()
        for running, task in self.tasks:
            if running is consumer:
                return await asyncio.wait_for(task, 30)
        raise AssertionError("not started here")


@pytest.fixture
async def running(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Running]:
    consumers = Running(redis_server, tmp_path / "central.log")
    yield consumers
    for consumer, task in consumers.tasks:
        consumer.request_stop()
        await asyncio.wait_for(task, 30)


def readiness_is(consumer: FileConsumer, expected: Readiness) -> Callable[[], bool]:
    return lambda: consumer.readiness() == expected


async def endpoint_port(consumer: FileConsumer) -> int:
    return await async_wait_until(lambda: consumer.health is not None and consumer.health.port, what="health port")


async def test_a_standby_is_not_ready_until_it_holds_the_lock(running: Running) -> None:
    first = running.start()
    await async_wait_until(readiness_is(first, Readiness(True, "ready")), what="first consumer ready")
    second = running.start()
    standing_by = Readiness(False, f"standing by for the lock of {running.output}")
    await async_wait_until(readiness_is(second, standing_by), what="second consumer standing by")
    port = await endpoint_port(second)
    assert await get(port, "/readyz") == (503, f"standing by for the lock of {running.output}\n")
    assert await get(port, "/livez") == (200, "ok\n")
    assert samples((await get(port, "/metrics"))[1])["logrelay_consumer_ready"] == 0

    assert await running.stop(first) == 0
    await async_wait_until(readiness_is(second, Readiness(True, "ready")), what="second consumer took over")
    assert await get(port, "/readyz") == (200, "ready\n")
    assert samples((await get(port, "/metrics"))[1])["logrelay_consumer_ready"] == 1


async def test_not_ready_while_redis_is_away_and_ready_again_once_it_is_back(
    running: Running, redis_server: RedisServer
) -> None:
    consumer = running.start()
    await async_wait_until(readiness_is(consumer, Readiness(True, "ready")), what="consumer ready")
    port = await endpoint_port(consumer)
    redis_server.stop()
    await async_wait_until(readiness_is(consumer, Readiness(False, "Redis unreachable")), what="Redis unreachable")
    assert await get(port, "/readyz") == (503, "Redis unreachable\n")
    # /metrics still answers, from what is known.
    status, text = await get(port, "/metrics")
    assert status == 200
    assert samples(text)["logrelay_consumer_ready"] == 0
    redis_server.start()
    await async_wait_until(readiness_is(consumer, Readiness(True, "ready")), timeout=20, what="ready again")
    assert await get(port, "/readyz") == (200, "ready\n")


async def test_a_stopping_consumer_says_so(running: Running) -> None:
    consumer = running.start()
    await async_wait_until(readiness_is(consumer, Readiness(True, "ready")), what="consumer ready")
    consumer.request_stop()
    assert consumer.readiness() == Readiness(False, "stopping")


async def test_metrics_count_what_was_written_and_the_group_lag(running: Running, redis_server: RedisServer) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        consumer = running.start()
        await add_records(redis, 0, 50)
        await async_wait_until(lambda: consumer.stats.entries_acked == 50, what="50 entries written and acknowledged")
        await consumer.watch.refresh()
        port = await endpoint_port(consumer)
        figures = samples((await get(port, "/metrics"))[1])
        assert figures["logrelay_consumer_lines_written_total"] == 50
        assert figures["logrelay_consumer_bytes_written_total"] == running.output.stat().st_size
        assert figures["logrelay_consumer_entries_acked_total"] == 50
        assert figures["logrelay_consumer_batches_total"] >= 1
        assert figures["logrelay_consumer_syncs_total"] >= 1
        assert figures["logrelay_consumer_sync_seconds_count"] == figures["logrelay_consumer_syncs_total"]
        assert figures["logrelay_consumer_batch_write_seconds_count"] == figures["logrelay_consumer_batches_total"]
        assert (figures["logrelay_consumer_lag"], figures["logrelay_consumer_pending"]) == (0, 0)

        # Stopped: what is added meanwhile is the group's lag.
        assert await running.stop(consumer) == 0
        await add_records(redis, 50, 7)
        watch = GroupWatch(redis, STREAM, consumer.settings.group, where="test")
        await watch.refresh()
        assert (watch.info.lag, watch.info.pending) == (7, 0)
    finally:
        await redis.aclose()


async def test_redis_answering_with_errors_is_named_not_called_unreachable(
    running: Running, redis_server: RedisServer
) -> None:
    with redis_server.client() as client:
        client.set(STREAM, "not a stream")  # the group cannot be created on it: every XGROUP CREATE fails
    consumer = running.start()

    def failing() -> bool:
        reason = consumer.readiness().reason
        return reason.startswith("Redis commands failing (ResponseError: WRONGTYPE")

    await async_wait_until(failing, timeout=30, what="readiness naming Redis's error")
    with redis_server.client() as client:
        client.delete(STREAM)
    await async_wait_until(readiness_is(consumer, Readiness(True, "ready")), timeout=30, what="ready again")


async def test_a_file_that_refuses_writes_is_named_with_its_error(running: Running, redis_server: RedisServer) -> None:
    running.output.symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    consumer = running.start()
    await async_wait_until(readiness_is(consumer, Readiness(True, "ready")), what="consumer ready")
    async with Redis.from_url(redis_server.url) as redis:
        await add_records(redis, 0, 3)
    full = Readiness(False, f"cannot write {running.output} (No space left on device)")
    await async_wait_until(readiness_is(consumer, full), timeout=30, what="readiness naming the file's error")
