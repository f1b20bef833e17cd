"""``--wait-replicas`` with a full stream (``--full-policy block``): records held back are written once, in
order, across reconnects and a failover.

A batch waiting for its replicas is answered again when it is sent again;
what it held must be counted once, from its last answer.  Real master and
replica (redis-server processes of this test), as in test_wait_replicas.py.
"""

from __future__ import annotations

import asyncio
import json
import signal
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
            await async_wait_until(lambda: publisher.stats.replica_waits_short >= 1, timeout=10, what="a short WAIT")
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


# -- batches resent as not pipelined ------------------------------------------------------------

from redis.asyncio import Connection, ConnectionPool  # noqa: E402

from relay.publish.script import PUBLISH_SCRIPT, Identity, RecordEntry, script_args  # noqa: E402

TOKEN = "00000000000000aa"


def prefill(server: RedisServer, count: int) -> None:
    """Entries already in the stream (not ours): they leave ``max_stream_length - count`` of room."""
    client = server.client()
    for _ in range(count):
        client.xadd(KEYS.records, {"v": "1", "record": json.dumps({"n": -1}), "client": "x", "catcher": "x"})


def call(client: object, seq: int, first: int, count: int, *, pipelined: bool, max_length: int) -> list[int]:
    batch = [RecordEntry(record(n), "c", "1") for n in range(first - 1, first - 1 + count)]
    args = script_args(batch, seq, "cat", max_length, "block", pipelined=pipelined, identity=Identity(TOKEN, first))
    keys = [KEYS.records, KEYS.dead_letters, KEYS.producer(f"cat:{TOKEN}")]
    return client.eval(PUBLISH_SCRIPT, 3, *keys, *args)  # type: ignore[attr-defined, no-any-return]


def test_batches_sent_again_together_say_again_what_the_first_held(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory()
    prefill(server, 8)  # the new master's stream: room for 2 of 10
    client = server.client()
    # What the publisher sends after a failover: the first batch in flight
    # without a turn, every later one pipelined behind it (held whole).
    assert call(client, 1, 1, 3, pipelined=False, max_length=10) == [2, 0, 1, 0]
    assert call(client, 2, 4, 3, pipelined=True, max_length=10) == [0, 0, 3, 0]
    # The connection breaks before the WAIT: both are sent again, and each says again what it held.
    assert call(client, 1, 1, 3, pipelined=False, max_length=10) == [-1, 0, 1, 0]
    assert call(client, 2, 4, 3, pipelined=True, max_length=10) == [-1, 0, 3, 0]


async def test_unconfirmed_batches_reach_a_nearly_full_new_master_once_across_two_reconnects(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    old, new = redis_server_factory(), redis_server_factory()
    prefill(new, 8)
    current = [old.port]

    class FollowingConnection(Connection):
        async def connect(self) -> None:
            self.port = current[0]
            await super().connect()

    pool = ConnectionPool(connection_class=FollowingConnection, port=old.port, socket_timeout=2)
    client = Redis.from_pool(pool)
    got: list[int] = []
    try:
        async with publishing(
            client, wait_replicas=1, wait_timeout=0.05, max_stream_length=10, full_policy="block"
        ) as publisher:
            # No replica: every WAIT is short, the batches stay in flight once applied.  Three batches,
            # each cut after the one before was applied (so none is pipelined).
            for step in range(3):
                publisher.add_records([record(n) for n in range(3 * step, 3 * step + 3)], "c", "1")
                await async_wait_until(
                    lambda step=step: old.client().xlen(KEYS.records) == 3 * step + 3,  # type: ignore[misc]
                    timeout=10,
                    what="the batch applied on the old master",
                )
            shorts = publisher.stats.replica_waits_short
            await async_wait_until(
                lambda: publisher.stats.replica_waits_short > shorts, timeout=10, what="a short WAIT"
            )
            # Failover: the new master has none of them, and room for 2 records.
            current[0] = new.port
            old.stop(signal.SIGKILL)
            await async_wait_until(
                lambda: new.client().xlen(KEYS.records) == 10, timeout=10, what="the resend on the new master"
            )
            shorts = publisher.stats.replica_waits_short
            await async_wait_until(
                lambda: publisher.stats.replica_waits_short > shorts, timeout=10, what="a short WAIT"
            )
            # The connection to the new master breaks once (a blip): everything in flight is sent again.
            dedup = publisher.stats.batches_deduplicated
            new.client().client_kill_filter(_type="normal", skipme=True)
            await async_wait_until(
                lambda: publisher.stats.batches_deduplicated >= dedup + 3, timeout=10, what="the repeats"
            )
            replicate(redis_server_factory(), new)  # WAITs are answered now
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (publisher.buffered or new.client().xlen(KEYS.records)):
                take_all(new, got)
                await asyncio.sleep(0.2)
            take_all(new, got)
        assert [n for n in got if n >= 0] == list(range(9))
    finally:
        await client.aclose()
