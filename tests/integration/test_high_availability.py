"""Following the master through a failover: Redis Sentinel and Redis Cluster, real processes, no restart of the client.

The test loops retry on errors with a deadline, as logrelay's publisher and
consumer do: during a failover every command fails as an outage, after it
the same client writes to the promoted replica.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from click.testing import CliRunner
from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.cli import main
from relay.common.redis_client import RedisSettings, create_redis
from relay.common.redis_protocol import pack_command, send_packed
from relay.common.stream import StreamKeys
from tests.support.ha import ClusterNodes, SentinelGroup
from tests.support.polling import wait_until

pytestmark = pytest.mark.integration

T = TypeVar("T")
KEYS = StreamKeys()


async def retrying(operation: Callable[[], Awaitable[T]], *, timeout: float = 40) -> tuple[T, list[RedisError]]:
    """Run ``operation`` until it succeeds (as the callers' retry loops do); its result and the errors seen."""
    errors: list[RedisError] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await operation(), errors
        except RedisError as exc:
            errors.append(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"still failing after {timeout}s: {[str(e) for e in errors[-3:]]}") from exc
            await asyncio.sleep(0.1)  # the callers' backoff between attempts


def client_for(url: str) -> Redis:
    # A short socket timeout: a stopped master costs a second per attempt, not five.
    return create_redis(
        RedisSettings.from_url(url, socket_timeout=1.0, connect_timeout=1.0),
        client_name="logrelay-ha-test",
        slot_key=KEYS.records,
    )


async def test_sentinel_client_follows_the_master_after_a_kill(sentinel_group: SentinelGroup) -> None:
    old = sentinel_group.current_master()
    client = client_for(sentinel_group.url)
    try:
        await client.set("k", "before")
        with old.client() as direct:
            assert direct.get("k") == b"before"
        old.stop(signal.SIGKILL)  # never restarted
        _, errors = await retrying(lambda: client.set("k", "after"))
        assert errors, "the write right after the kill cannot have reached a master"
        new = sentinel_group.wait_for_new_master(old)
        assert new is not old
        with new.client() as direct:
            assert direct.get("k") == b"after"
        # The raw path (the publisher's, the consumer's) writes there too, on the same client.
        entry_id = await send_packed(client, pack_command("XADD", KEYS.records, "*", "v", "1"))
        with new.client() as direct:
            assert [entry for entry, _ in direct.xrange(KEYS.records)] == [entry_id]
    finally:
        await client.aclose()


async def test_sentinel_writes_never_land_on_a_master_that_was_stopped_and_came_back(
    sentinel_group: SentinelGroup,
) -> None:
    old = sentinel_group.current_master()
    client = client_for(sentinel_group.url)
    try:
        await send_packed(client, pack_command("XADD", KEYS.records, "*", "n", "0"))
        old.pause()  # SIGSTOP: holds its sockets, answers nothing
        new = sentinel_group.wait_for_new_master(old, timeout=30)
        old.resume()  # comes back believing it is the master, until the Sentinels demote it
        written = []
        for n in range(1, 20):
            entry_id, _ = await retrying(
                lambda n=n: send_packed(client, pack_command("XADD", KEYS.records, "*", "n", n))
            )
            written.append(entry_id)
        sentinel_group.wait_for_role(old, "slave")
        with new.client() as direct:
            on_new = [entry for entry, _ in direct.xrange(KEYS.records)]
        assert set(written) <= set(on_new)
        # What the old master holds now is the new master's copy: nothing written there alone survived.
        with old.client() as direct:
            wait_until(lambda: direct.xlen(KEYS.records) == len(on_new), what="the old master to be a copy")
            assert [entry for entry, _ in direct.xrange(KEYS.records)] == on_new
    finally:
        await client.aclose()


async def test_cluster_client_writes_to_the_slots_master_and_follows_its_replica(redis_cluster: ClusterNodes) -> None:
    old = redis_cluster.master_for(KEYS.records)
    client = client_for(redis_cluster.url)
    try:
        first = await send_packed(client, pack_command("XADD", KEYS.records, "*", "n", "0"))
        await client.xadd(KEYS.dead_letters, {"reason": "shares the slot"})
        # Replication is asynchronous: without this a busy machine kills the master before its replica has them.
        assert await client.execute_command("WAIT", 1, 20000) == 1
        with old.client() as direct:
            assert [entry for entry, _ in direct.xrange(KEYS.records)] == [first]
            assert direct.xlen(KEYS.dead_letters) == 1
        old.stop(signal.SIGKILL)  # never restarted
        second, errors = await retrying(lambda: send_packed(client, pack_command("XADD", KEYS.records, "*", "n", "1")))
        assert errors, "the write right after the kill cannot have reached a master"
        new = redis_cluster.wait_for_promotion(old, KEYS.records)
        with new.client() as direct:
            assert [entry for entry, _ in direct.xrange(KEYS.records)] == [first, second]
    finally:
        await client.aclose()


def test_status_reads_through_the_sentinels(sentinel_group: SentinelGroup) -> None:
    with sentinel_group.current_master().client() as direct:
        direct.xadd(KEYS.records, {"v": "1"})
    result = CliRunner().invoke(main, ["status", "--redis-url", sentinel_group.url])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("stream 'logrelay': 1 entries")


def test_a_bad_scheme_is_a_one_line_configuration_error() -> None:
    result = CliRunner().invoke(main, ["status", "--redis-url", "redis+sentinal://app:s3cret@h:26379/logs"])
    assert result.exit_code == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert "unsupported Redis URL scheme 'redis+sentinal'" in line
    assert "redis+sentinel://" in line
    assert "s3cret" not in result.stderr
