"""``--wait-replicas``: a batch leaves the catcher's buffer only once replicas have it; after a failover the
unconfirmed ones go to the new master, and what it already holds is not added twice.

A real master and replica (redis-server processes of this test).  The
failover here is done by hand (the replica promoted with ``REPLICAOF NO
ONE``, the client pointed at it) so that the publisher's part is tested on
its own; tests/integration/test_failover.py runs the same through Sentinel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Connection, ConnectionPool, Redis

from relay.common.stream import StreamKeys
from relay.publish.publisher import StreamPublisher
from relay.settings import CatcherSettings
from tests.support.polling import async_wait_until, wait_until
from tests.support.realredis import RedisServer

KEYS = StreamKeys("logs")


def replicate(replica: RedisServer, master: RedisServer) -> None:
    """Make ``replica`` a replica of ``master`` and wait until the master counts it online."""
    replica.client().replicaof("127.0.0.1", master.port)

    def online() -> bool:
        info = master.client().info("replication")
        return info.get("connected_slaves") == 1 and info.get("slave0", {}).get("state") == "online"

    wait_until(online, timeout=20, what="the replica online")


def record(n: int) -> bytes:
    return json.dumps({"msg": f"record {n}", "n": n}).encode()


def numbers_in(server: RedisServer) -> list[int]:
    return [json.loads(fields[b"record"])["n"] for _, fields in server.client().xrange(KEYS.records)]


@contextlib.asynccontextmanager
async def publishing(client: Redis, **options: object) -> AsyncIterator[StreamPublisher]:
    publisher = StreamPublisher(
        client, KEYS, catcher_id="test-catcher", buffer_bytes=64 * 2**20, window=4, batch_max_records=10, **options
    )
    task = asyncio.create_task(publisher.run())
    try:
        yield publisher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def pair(redis_server_factory: Callable[..., RedisServer]) -> tuple[RedisServer, RedisServer]:
    master, replica = redis_server_factory(), redis_server_factory()
    replicate(replica, master)
    return master, replica


async def test_a_batch_stays_buffered_until_a_replica_acknowledges_it(pair: tuple[RedisServer, RedisServer]) -> None:
    master, replica = pair
    client = Redis(port=master.port, socket_timeout=5)
    try:
        async with publishing(client, wait_replicas=1, wait_timeout=0.05) as publisher:
            publisher.add_records([record(n) for n in range(5)], "c", "1")
            await async_wait_until(lambda: publisher.buffered == 0, timeout=10, what="the first records confirmed")
            replica.pause()
            short = publisher.stats.replica_waits_short
            publisher.add_records([record(n) for n in range(5, 30)], "c", "1")
            # The master has them; the catcher keeps them until the replica says it has them too.
            await async_wait_until(
                lambda: master.client().xlen(KEYS.records) == 30, timeout=10, what="all applied on the master"
            )
            await async_wait_until(
                lambda: publisher.stats.replica_waits_short >= short + 2, timeout=10, what="WAITs short of a replica"
            )
            assert publisher.buffered == 25
            assert publisher.replicas_acknowledging == 0
            replica.resume()
            await async_wait_until(lambda: publisher.buffered == 0, timeout=10, what="the rest confirmed")
        assert numbers_in(master) == list(range(30))
    finally:
        await client.aclose()


async def test_without_wait_replicas_a_batch_leaves_the_buffer_once_the_master_applied_it(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair
    client = Redis(port=master.port, socket_timeout=5)
    try:
        replica.pause()
        async with publishing(client) as publisher:
            publisher.add_records([record(n) for n in range(25)], "c", "1")
            await async_wait_until(lambda: publisher.buffered == 0, timeout=10, what="the records confirmed")
            assert publisher.replicas_acknowledging is None
        replica.resume()
    finally:
        await client.aclose()


async def test_after_a_failover_the_unconfirmed_batches_reach_the_new_master_once(
    pair: tuple[RedisServer, RedisServer], redis_server_factory: Callable[..., RedisServer]
) -> None:
    master, replica = pair
    current = [master.port]

    class FollowingConnection(Connection):
        """Connects to the current master, as a connection of Sentinel's pool does."""

        async def connect(self) -> None:
            self.port = current[0]
            await super().connect()

    pool = ConnectionPool(connection_class=FollowingConnection, port=master.port, socket_timeout=2)
    client = Redis.from_pool(pool)
    try:
        async with publishing(client, wait_replicas=1, wait_timeout=0.05) as publisher:
            publisher.add_records([record(n) for n in range(20)], "c", "1")
            await async_wait_until(lambda: publisher.buffered == 0, timeout=10, what="the first records confirmed")
            # The replica stops reading: what the master applies now reaches
            # it partly (what sits in its socket), or not at all.
            replica.pause()
            publisher.add_records([record(n) for n in range(20, 60)], "c", "1")
            await async_wait_until(
                lambda: master.client().xlen(KEYS.records) == 60, timeout=10, what="all applied on the master"
            )
            assert publisher.buffered == 40
            master.stop(signal.SIGKILL)
            replica.resume()
            replica.client().replicaof("NO", "ONE")
            current[0] = replica.port
            # On the new master, which has no replica: published, kept until one has them.
            await async_wait_until(
                lambda: publisher.replicas_acknowledging == 0, timeout=20, what="a WAIT on the new master"
            )
            await async_wait_until(
                lambda: replica.client().xlen(KEYS.records) == 60, timeout=10, what="all on the new master"
            )
            assert publisher.buffered > 0
            replicate(redis_server_factory(), replica)
            await async_wait_until(lambda: publisher.buffered == 0, timeout=20, what="the rest confirmed")
        # Every record once, in order, whatever part of the unconfirmed batches the replica had.
        assert numbers_in(replica) == list(range(60))
        seqs = [fields[b"seq"] for _, fields in replica.client().xrange(KEYS.records)]
        assert len(set(seqs)) == 60
    finally:
        await client.aclose()


def test_wait_replicas_is_refused_below_zero() -> None:
    with pytest.raises(ValueError, match="wait-replicas"):
        CatcherSettings(wait_replicas=-1)
    with pytest.raises(ValueError, match="wait-timeout-ms"):
        CatcherSettings(wait_timeout_ms=0)
