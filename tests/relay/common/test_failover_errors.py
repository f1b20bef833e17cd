"""A server that is not the master answers with an error: on logrelay's raw RESP paths that error is an outage.

After a failover a client may still hold a connection to the old master,
now a replica (``READONLY``), or to a cluster node that no longer serves the
slot (``MOVED``).  Those answers must reach the publisher's and the
consumer's retry loops as a ``redis.exceptions.ConnectionError``, and the
connection must be dropped so that the next one finds the new master.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError

from consumers.group_reader import GroupReader
from relay.common.redis_protocol import CommandPipeline, is_failover_error, pack_command, send_packed
from tests.support.polling import async_wait_until, wait_until
from tests.support.realredis import RedisServer

NAME = "logrelay-failover-test"


@pytest.fixture
def replica(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A real replica of a real master, in sync, with a stream and a consumer group on it."""
    master = redis_server_factory()
    with master.client() as client:
        client.xadd("logs", {"v": "1"})
        client.xgroup_create("logs", "group", id="0")
    server = redis_server_factory(extra_args=("--replicaof", "127.0.0.1", str(master.port)))

    def synced() -> bool:
        with server.client() as client:
            return client.info("replication").get("master_link_status") == "up" and client.xlen("logs") == 1

    wait_until(synced, timeout=10, what="the replica's sync")
    return server


def our_connections(server: RedisServer) -> int:
    with server.client() as client:
        return sum(1 for entry in client.client_list() if entry["name"] == NAME)


async def test_a_write_sent_raw_to_a_replica_is_an_outage_and_drops_the_connection(replica: RedisServer) -> None:
    # A client that takes the replica for the master: the old master after a failover.
    client = Redis.from_url(replica.url, client_name=NAME)
    try:
        assert await client.ping()
        assert our_connections(replica) == 1
        with pytest.raises(ConnectionError, match=r"not the master now \(failover\): READONLY"):
            await send_packed(client, pack_command("XADD", "logs", "*", "v", "1"))
        await async_wait_until(lambda: our_connections(replica) == 0, what="the connection to be dropped")
        # A plain error reply still leaves the connection in use.
        with pytest.raises(ResponseError, match="unknown command"):
            await send_packed(client, pack_command("NO-SUCH-COMMAND"))
        assert our_connections(replica) == 1
    finally:
        await client.aclose()


async def test_a_pipeline_of_writes_to_a_replica_raises_on_the_first_reply(replica: RedisServer) -> None:
    client = Redis.from_url(replica.url, client_name=NAME)
    pipe = CommandPipeline(client)
    try:
        await pipe.send([pack_command("XADD", "logs", "*", "v", str(n)) for n in range(3)])
        with pytest.raises(ConnectionError, match="READONLY"):
            await pipe.reply()
        # The replies behind it are gone with the connection: none is read as a reply.
        with pytest.raises(ConnectionError, match="reset"):
            await pipe.reply()
        await async_wait_until(lambda: our_connections(replica) == 0, what="the connection to be dropped")
    finally:
        await pipe.close()
        await client.aclose()


async def test_the_consumers_read_from_a_replica_is_an_outage_and_drops_the_connection(replica: RedisServer) -> None:
    # XREADGROUP writes (the group's pending list): the replica refuses it, on the read path that takes raw bytes.
    client = Redis.from_url(replica.url, client_name=NAME)
    reader = GroupReader(client, "logs", "group", "consumer-1", batch_size=10, block_ms=100)
    try:
        assert await client.ping()
        with pytest.raises(ConnectionError, match="READONLY"):
            await reader.new()
        await async_wait_until(lambda: our_connections(replica) == 0, what="the connection to be dropped")
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "reply",
    [
        "READONLY You can't write against a read only replica.",
        "MOVED 3999 127.0.0.1:6381",
        "ASK 3999 127.0.0.1:6381",
        "CLUSTERDOWN The cluster is down",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "LOADING Redis is loading the dataset in memory",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
    ],
)
async def test_each_failover_error_reply_is_an_outage(redis_server: RedisServer, reply: str) -> None:
    """The replies no single server here can be made to give, as redis-py's parser makes them."""
    client = Redis.from_url(redis_server.url, client_name=NAME)
    pipe = CommandPipeline(client)
    try:
        await pipe.send(pack_command("PING"))
        assert await pipe.reply() == b"PONG"
        error = pipe.error_reply(reply.encode())
        assert isinstance(error, ConnectionError)
        assert is_failover_error(error.__cause__ or error)
        await pipe.close()
        await async_wait_until(lambda: our_connections(redis_server) == 0, what="the connection to be dropped")
    finally:
        await pipe.close()
        await client.aclose()


async def test_other_error_replies_are_still_replies(redis_server: RedisServer) -> None:
    client = Redis.from_url(redis_server.url, client_name=NAME)
    pipe = CommandPipeline(client)
    try:
        await pipe.send(pack_command("PING"))
        await pipe.reply()
        for reply in ("NOGROUP No such key", "WRONGTYPE Operation against a key", "NOSCRIPT No matching script"):
            error = pipe.error_reply(reply)
            assert isinstance(error, ResponseError)
            assert not is_failover_error(error)
        await pipe.close()
        assert our_connections(redis_server) == 1
    finally:
        await pipe.close()
        await client.aclose()


async def test_a_script_that_writes_on_a_replica_is_an_outage(replica: RedisServer) -> None:
    # The publisher's path: a script whose XADD the replica refuses.
    client = Redis.from_url(replica.url, client_name=NAME)
    try:
        script = "return redis.call('XADD', KEYS[1], '*', 'v', '1')"
        with pytest.raises(ConnectionError, match="READONLY"):
            await send_packed(client, pack_command("EVAL", script, 1, "logs"))
        await async_wait_until(lambda: our_connections(replica) == 0, what="the connection to be dropped")
    finally:
        await client.aclose()


async def test_a_cluster_node_that_serves_no_slot_is_an_outage(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    node = redis_server_factory(extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"))
    client = Redis.from_url(node.url, client_name=NAME)
    try:
        with pytest.raises(ConnectionError, match="CLUSTERDOWN"):
            await send_packed(client, pack_command("XADD", "logs", "*", "v", "1"))
        await async_wait_until(lambda: our_connections(node) == 0, what="the connection to be dropped")
    finally:
        await client.aclose()
