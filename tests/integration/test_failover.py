"""Redis failing over under load: Sentinel (master killed for good; master stopped past down-after, then
continued) and Redis Cluster (the stream's master killed), with every record once in the file, in order.

Real processes throughout: redis-server nodes and Sentinels (tests/support/ha.py), ``logrelay catch`` with
``--wait-replicas 1`` and ``logrelay consume file`` on the ``redis+sentinel://`` or ``redis+cluster://`` URL,
stock ``SocketHandler`` senders.  Redis replicates asynchronously: what the master held and had not passed on
is lost with it.  The catcher keeps a batch until a replica acknowledged it, and sends the unconfirmed again to
the new master; records the file already holds come back under new ids and are known by their identity.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.clients import finish_senders, start_senders
from tests.support.ha import ClusterNodes, SentinelGroup
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess, ConsumerProcess
from tests.support.realredis import RedisServer
from tests.support.streams import assert_each_record_once_in_order, count_json_lines, json_lines

pytestmark = pytest.mark.integration

CatcherFactory = Callable[..., CatcherProcess]
ConsumerFactory = Callable[..., ConsumerProcess]

CLIENTS, COUNT, RATE = 4, 2500, 250.0  # 10 s of logging per client


def file_records(path: Path) -> list[tuple[str, int]]:
    return [(record["client_id"], record["seq"]) for record in json_lines(path)]


def under_load(
    url: str, catcher_factory: CatcherFactory, consumer_factory: ConsumerFactory, tmp_path: Path
) -> tuple[CatcherProcess, ConsumerProcess, Path, list[subprocess.Popen[bytes]]]:
    """A catcher (``--wait-replicas 1``) and a JSON file consumer on ``url``, stock senders sending, lines arriving."""
    catcher = catcher_factory(url, "--wait-replicas", "1")
    output = tmp_path / "central.jsonl"
    consumer = consumer_factory(url, output, "--format", "json")
    senders = start_senders(catcher.port, CLIENTS, COUNT, patient=True, rate=RATE)
    wait_until(lambda: count_json_lines(output) >= 1000, timeout=60, what="lines before the fault")
    return catcher, consumer, output, senders


def every_record_once_in_order(output: Path, senders: list[subprocess.Popen[bytes]]) -> None:
    reports = finish_senders(senders)
    assert all(report["errors"] == 0 for report in reports), reports
    total = CLIENTS * COUNT
    wait_until(lambda: count_json_lines(output) >= total, timeout=120, what="every record in the file")
    assert_each_record_once_in_order(file_records(output), CLIENTS, COUNT)


def stop_both(catcher: CatcherProcess, consumer: ConsumerProcess, *, replica_left: bool) -> None:
    """Stop both; the catcher exits 0 once a replica acknowledged everything, else 1, saying what it kept."""
    assert consumer.stop() == 0
    assert "Traceback" not in consumer.log
    if replica_left:
        assert catcher.stop() == 0
    else:
        # The promoted replica has none of its own: nothing could be confirmed since.
        assert catcher.stop() == 1
        assert "applied on the master but acknowledged by fewer than 1 replicas (--wait-replicas)" in catcher.log
    assert "Traceback" not in catcher.log


def test_sentinel_master_killed_for_good_under_load(
    sentinel_group: SentinelGroup, catcher_factory: CatcherFactory, consumer_factory: ConsumerFactory, tmp_path: Path
) -> None:
    catcher, consumer, output, senders = under_load(sentinel_group.url, catcher_factory, consumer_factory, tmp_path)
    old = sentinel_group.current_master()
    old.stop(signal.SIGKILL)  # never started again
    new = sentinel_group.wait_for_new_master(old)
    every_record_once_in_order(output, senders)
    # The promoted replica has no replica of its own: the catcher says why it keeps what it published.
    wait_until(lambda: "replicas asked for" in catcher.log, timeout=30, what="the catcher's word on its replicas")
    assert new.port != old.port
    stop_both(catcher, consumer, replica_left=False)


def test_sentinel_master_stopped_past_down_after_then_continued(
    sentinel_group: SentinelGroup, catcher_factory: CatcherFactory, consumer_factory: ConsumerFactory, tmp_path: Path
) -> None:
    catcher, consumer, output, senders = under_load(sentinel_group.url, catcher_factory, consumer_factory, tmp_path)
    old = sentinel_group.current_master()
    old.pause()
    sentinel_group.wait_for_new_master(old)
    # Back after the failover: it answers what its clients sent meanwhile, then
    # the Sentinels make it a replica, and what it accepted is discarded.
    old.resume()
    sentinel_group.wait_for_role(old, "slave")
    every_record_once_in_order(output, senders)
    stop_both(catcher, consumer, replica_left=True)


STREAM = "logrelay"


def test_cluster_failover_of_the_streams_master_under_load(
    redis_cluster_factory: Callable[[], ClusterNodes],
    catcher_factory: CatcherFactory,
    consumer_factory: ConsumerFactory,
    tmp_path: Path,
) -> None:
    cluster = redis_cluster_factory()
    catcher, consumer, output, senders = under_load(cluster.url, catcher_factory, consumer_factory, tmp_path)
    old: RedisServer = cluster.master_for("{" + STREAM + "}")
    old.stop(signal.SIGKILL)
    cluster.wait_for_promotion(old, "{" + STREAM + "}")
    every_record_once_in_order(output, senders)
    stop_both(catcher, consumer, replica_left=False)
