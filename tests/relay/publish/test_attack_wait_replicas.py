"""Attack findings on ``--wait-replicas`` in the publisher: each test shows a hole (xfail strict).

Real master and replica (redis-server processes of this test), as in test_wait_replicas.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from tests.relay.publish.test_wait_replicas import KEYS, publishing, record, replicate
from tests.support.polling import async_wait_until
from tests.support.realredis import RedisServer


@pytest.fixture
def pair(redis_server_factory: Callable[..., RedisServer]) -> tuple[RedisServer, RedisServer]:
    master, replica = redis_server_factory(), redis_server_factory()
    replicate(replica, master)
    return master, replica


def take_all(server: RedisServer, into: list[int]) -> None:
    """Read the stream's records into ``into`` and delete them (a consumer and its trimmer, say): room again."""
    client = server.client()
    entries = client.xrange(KEYS.records)
    into.extend(json.loads(fields[b"record"])["n"] for _, fields in entries)
    if entries:
        client.xdel(KEYS.records, *[entry_id for entry_id, _ in entries])


@pytest.mark.xfail(
    strict=True,
    reason="HOLE: publisher._publish never clears `held` when it sends in-flight batches again; with "
    "--wait-replicas and --full-policy block a batch that held records and is resent after a connection "
    "failure (dedup reply repeats its held count) adds its held tail twice: those records are written twice",
)
async def test_records_held_by_a_full_stream_are_written_once_across_a_reconnect(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair
    client = Redis(port=master.port, socket_timeout=5)
    got: list[int] = []
    try:
        async with publishing(
            client, wait_replicas=1, wait_timeout=0.05, max_stream_length=5, full_policy="block"
        ) as publisher:
            replica.pause()  # WAITs come back short: the batch stays in flight, applied
            publisher.add_records([record(n) for n in range(8)], "c", "1")
            await async_wait_until(
                lambda: publisher.stats.replica_waits_short >= 1, timeout=10, what="a short WAIT"
            )
            assert master.client().xlen(KEYS.records) == 5  # 0..4 written, 5..7 held
            # The publishing connection breaks (a network blip, a proxy, a timeout).
            master.client().client_kill_filter(_type="normal", skipme=True)
            await async_wait_until(
                lambda: publisher.stats.batches_deduplicated >= 1, timeout=10, what="the batch sent again"
            )
            replica.resume()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (publisher.buffered or master.client().xlen(KEYS.records)):
                take_all(master, got)
                await asyncio.sleep(0.2)
            take_all(master, got)
        assert got == list(range(8))
    finally:
        replica.resume()
        await client.aclose()
