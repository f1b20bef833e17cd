"""``--wait-replicas``: the ``WAIT`` the publisher sends behind its batches, and which batches its reply confirms.

Redis replicates asynchronously: a batch the master applied is lost with it
until a replica has it.  With ``replicas`` > 0 the publisher sends ``WAIT
replicas timeout`` on its connection behind the batches it sent (one at a
time: a WAIT holds the connection until it returns), and a batch leaves the
buffer only once a WAIT sent after it counted enough replicas.  Batches the
master applied and the replicas have not all acknowledged stay in flight
(:attr:`relay.publish.batching.Batch.applied`), outside the window: new
batches keep going out meanwhile.  A WAIT that counts too few confirms
nothing; the next one covers the same batches again.  No I/O here.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from redis.exceptions import RedisError, ResponseError

from relay.common.counters import CatcherStats
from relay.common.redis_protocol import pack_command
from relay.publish.batching import Batch

__all__ = ["ReplicaWait", "Wait"]

log = logging.getLogger("logrelay.publisher")


class Wait:
    """A ``WAIT`` sent on the publishing connection: its reply says how many replicas have the batches before it."""

    __slots__ = ("covers",)

    def __init__(self, covers: Batch) -> None:
        self.covers = covers  # the last batch sent before it


class ReplicaWait:
    """How many replicas must acknowledge a batch (0: none, no WAIT is sent), and what their replies confirm."""

    def __init__(self, replicas: int, timeout: float, stats: CatcherStats) -> None:
        self.replicas = replicas
        #: The packed ``WAIT replicas timeout-ms``.
        self.command = pack_command("WAIT", replicas, max(1, round(timeout * 1000)))
        #: How many replicas the last WAIT counted (None: no WAIT yet).
        self.acknowledging: int | None = None
        self._stats = stats
        self._last_log = -60.0

    def confirmed(self, wait: Wait, reply: object, in_flight: deque[Batch]) -> int | BaseException:
        """How many batches at the head of ``in_flight`` a WAIT's reply confirms; or why the reply is wrong.

        Those up to the one the WAIT was sent behind, applied: none if too
        few replicas acknowledged (they are waited for again).
        """
        if isinstance(reply, ResponseError):
            return reply
        if type(reply) is not int:
            return RedisError(f"unexpected reply to WAIT: {reply!r:.100}")
        self.acknowledging = reply
        if reply < self.replicas:
            self._stats.replica_waits_short += 1
            now = time.monotonic()
            if now - self._last_log >= 30:
                self._last_log = now
                log.warning(
                    "%d of the %d replicas asked for (--wait-replicas) acknowledged the last batches; "
                    "keeping their %d records buffered until enough do",
                    reply,
                    self.replicas,
                    sum(len(batch.entries) for batch in in_flight),
                )
            return 0
        if wait.covers not in in_flight:
            return 0  # an earlier WAIT confirmed it: those at the head now went out after this one
        count = 0
        for batch in in_flight:
            if not batch.applied:
                break  # its reply was an error: everything is sent again anyway
            count += 1
            if batch is wait.covers:
                break
        return count
