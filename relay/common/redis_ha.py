"""Clients that follow the master through a failover: Redis Sentinel and Redis Cluster.

Both are a plain ``redis.asyncio.Redis`` over a pool whose connections find
their server when they connect, never per command:

* Sentinel: redis-py's ``SentinelConnectionPool`` asks the Sentinels for the
  service's master at each connect.
* Cluster: :class:`SlotMasterPool` asks the cluster (redis-py's
  ``RedisCluster`` discovery, ``CLUSTER SLOTS``) which master serves one
  hash slot at each connect.  logrelay needs no more: all the keys of one
  stream share a slot (:class:`relay.common.stream.StreamKeys`), so the
  publish script and the consumer's reads run on one node, unchanged.

A connection whose server answers that it is not the master now
(:func:`relay.common.redis_protocol.is_failover_error`) is disconnected and
the answer raised as a ``ConnectionError``: the caller's retry takes a new
connection, which finds the new master.  Nothing is retried or redirected
here (no hidden retries: the callers own them).
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, ConnectionPool, SSLConnection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.crc import key_slot
from redis.exceptions import ConnectionError, RedisClusterException, RedisError

from relay.common.redis_protocol import failover_outage, is_failover_error

__all__ = ["SentinelMasterPool", "SlotMasterPool", "cluster_slot_client", "sentinel_master_client"]

Address = tuple[str, int]

#: How often a pool checks, on a checkout, that the master it connects to is still the master.
RECHECK_SECONDS = 1.0


class _FailoverAware:
    """Mixin for a Connection: a failover error reply drops the connection and is raised as a ConnectionError."""

    host: str
    port: int

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)  # type: ignore[misc]
        except RedisError as exc:
            if not is_failover_error(exc):
                raise
            await self.disconnect()  # type: ignore[attr-defined]
            raise failover_outage(exc, f"Redis at {self.host}:{self.port}") from exc


class _SentinelConnection(_FailoverAware, SentinelManagedConnection):
    """redis-py's Sentinel-managed connection (READONLY already handled there), and the other failover errors."""


class _SentinelSSLConnection(_SentinelConnection, SSLConnection):
    pass


class _Rechecking:
    """Mixin for a pool: at most every :data:`RECHECK_SECONDS`, a checkout first asks who the master is now.

    A connection only finds its server when it connects.  An idle pooled
    connection to a master that was stopped (SIGSTOP, a frozen VM, a
    partition) and has come back still reaches it, and for a moment after its
    return that old master believes it is the master and takes writes, which
    its demotion then throws away.  Asking again before reuse drops idle
    connections to a master that is no longer the one named
    (``_refresh_master`` disconnects them).  If nobody answers, the checkout
    goes on: the command itself then meets the outage, or not.
    """

    _checked_at = float("-inf")

    async def _refresh_master(self) -> object:
        raise NotImplementedError

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now - self._checked_at >= RECHECK_SECONDS:
            self._checked_at = now
            with contextlib.suppress(RedisError, OSError):
                await self._refresh_master()
        return await super().get_connection(*args, **kwargs)  # type: ignore[misc]


class SentinelMasterPool(_Rechecking, SentinelConnectionPool):
    """redis-py's pool of connections to a Sentinel service's master; closing it closes the Sentinel clients too.

    Idle connections to a master the Sentinels no longer name are dropped at
    the next checkout (:class:`_Rechecking`).
    """

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        kwargs["connection_class"] = _SentinelSSLConnection if kwargs.pop("ssl", False) else _SentinelConnection
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]

    async def _refresh_master(self) -> object:
        return await self.get_master_address()  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            # master_for() leaves the Sentinels' own clients to their creator: here, this pool's owner.
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.aclose()


def sentinel_master_client(
    sentinels: Sequence[Address],
    service: str,
    *,
    sentinel_kwargs: dict[str, Any],
    **connection_kwargs: Any,
) -> Redis:
    """A client of ``service``'s current master, as the Sentinels ``sentinels`` name it at each connect.

    ``sentinel_kwargs``: the connections to the Sentinels (timeouts, their
    login, TLS); ``connection_kwargs``: those to the master.  Closing the
    client closes both.
    """
    manager = Sentinel(list(sentinels), sentinel_kwargs=sentinel_kwargs)
    client: Redis = manager.master_for(service, connection_pool_class=SentinelMasterPool, **connection_kwargs)
    return client


class _SlotConnection(_FailoverAware, Connection):
    """A connection to whichever master serves the pool's slot when it connects."""

    def __init__(self, **kwargs: Any) -> None:
        self._slot_pool: SlotMasterPool = kwargs.pop("slot_pool")
        super().__init__(**kwargs)

    async def connect(self) -> None:
        if self.is_connected:
            return
        self.host, self.port = await self._slot_pool.find_master()
        await super().connect()  # type: ignore[no-untyped-call]


class _SlotSSLConnection(_SlotConnection, SSLConnection):
    pass


class SlotMasterPool(_Rechecking, ConnectionPool):
    """Connections to the master that serves one hash slot of a Redis Cluster, found at each connect.

    ``startup_nodes``: where to ask first; the nodes found are asked next time
    too.  ``discovery_kwargs``: the connections that ask (login, timeouts,
    TLS).  When the master found changes, idle connections to the old one
    are dropped (as ``SentinelConnectionPool`` does; the master is asked for
    again on a checkout, see :class:`_Rechecking`); a busy one that still
    reaches the old node gets a failover error reply (MOVED) and is dropped then.
    """

    def __init__(
        self, *, startup_nodes: Sequence[Address], slot: int, discovery_kwargs: dict[str, Any], **kwargs: Any
    ) -> None:
        kwargs["connection_class"] = _SlotSSLConnection if kwargs.pop("ssl", False) else _SlotConnection
        super().__init__(**kwargs)
        self.connection_kwargs["slot_pool"] = weakref.proxy(self)
        self.slot = slot
        self.master_address: Address | None = None
        self._startup_nodes = list(startup_nodes)
        self._known_nodes: list[Address] = []
        self._discovery_kwargs = discovery_kwargs

    def __repr__(self) -> str:
        return f"<{type(self).__name__}(slot={self.slot}, master={self.master_address})>"

    async def _refresh_master(self) -> object:
        return await self.find_master()

    async def find_master(self) -> Address:
        """Ask the cluster which master serves :attr:`slot` now (``RedisError`` if no node answers or none does)."""
        nodes = list(dict.fromkeys([*self._startup_nodes, *self._known_nodes]))
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            require_full_coverage=False,
            **self._discovery_kwargs,
        )
        try:
            await cluster.initialize()
            node = cluster.nodes_manager.get_node_from_slot(self.slot)
            self._known_nodes = [(known.host, int(known.port)) for known in cluster.get_nodes()]
            address = (node.host, int(node.port))
        except RedisClusterException as exc:  # not a RedisError: no node answered, or none serves the slot
            raise ConnectionError(f"no Redis Cluster master for slot {self.slot} among {nodes}: {exc}") from exc
        finally:
            await cluster.aclose()
        if address != self.master_address:
            self.master_address = address
            await self.disconnect(inuse_connections=False)
        return address


def cluster_slot_client(startup_nodes: Sequence[Address], slot_key: str, **connection_kwargs: Any) -> Redis:
    """A client of the master that serves ``slot_key``'s hash slot, found at each connect.

    ``connection_kwargs``: the connections' settings (login, timeouts,
    ``retry``, ``client_name``, TLS), used to ask the cluster too.
    """
    discovery = {name: value for name, value in connection_kwargs.items() if name != "client_name"}
    pool = SlotMasterPool(
        startup_nodes=startup_nodes,
        slot=key_slot(slot_key.encode()),
        discovery_kwargs=discovery,
        **connection_kwargs,
    )
    return Redis.from_pool(pool)
