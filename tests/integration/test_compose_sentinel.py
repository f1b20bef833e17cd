"""compose.sentinel.yaml's topology with real processes: its catcher and consumer settings on a local
Sentinel group (tests/support/ha.py: master, replica, three Sentinels), the master killed under load.

The catcher and the consumer run with exactly the ``LOGRELAY_*`` variables compose.sentinel.yaml sets for
them, turned into the options they stand for; only the Sentinels' host names become the group's loopback
addresses (Docker's DNS does not run here).  What compose.yaml sets for the containers (listen address,
PROXY protocol, health port, output path) belongs to the fleet, run as processes in test_fleet.py.  The
group's Sentinels call a master down after 1 s, not the file's 5 s, to keep the test short.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from relay.common.redis_client import RedisTarget
from tests.support.clients import finish_senders, start_senders
from tests.support.compose import (
    COMPOSE_FILE,
    SENTINEL_COMPOSE_FILE,
    load_compose,
    option_arguments,
    service_command,
    service_env,
)
from tests.support.ha import SentinelGroup
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess, ConsumerProcess
from tests.support.streams import assert_each_record_once_in_order, count_json_lines, json_lines

pytestmark = pytest.mark.integration

CLIENTS, COUNT, RATE = 3, 2000, 250.0  # 8 s of logging per client


def compose_settings(service: str) -> tuple[str, list[str]]:
    """(Redis URL, the other options) that compose.sentinel.yaml's own ``environment`` sets for ``service``.

    The command is the deployment's (the override keeps compose.yaml's); the variables are the override's.
    """
    command = service_command(load_compose(COMPOSE_FILE, SENTINEL_COMPOSE_FILE)["services"][service])
    assert command is not None
    arguments = option_arguments(command, service_env(load_compose(SENTINEL_COMPOSE_FILE)["services"][service]))
    at = arguments.index("--redis-url")
    return arguments[at + 1], arguments[:at] + arguments[at + 2 :]


def on_the_group(url: str, group: SentinelGroup) -> str:
    """``url`` with its Sentinels, in their order, replaced by ``group``'s and its service by the group's."""
    target = RedisTarget.parse(url)
    assert target.kind == "sentinel", url
    assert len(target.nodes) == len(group.sentinels), f"{url} names {len(target.nodes)} Sentinels"
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in group.sentinels)
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{hosts}", path=f"/{group.service}/{target.db}"))


def test_the_compose_sentinel_settings_survive_a_master_killed_under_load(
    sentinel_group_factory: Callable[..., SentinelGroup],
    catcher_factory: Callable[..., CatcherProcess],
    consumer_factory: Callable[..., ConsumerProcess],
    tmp_path: Path,
) -> None:
    catcher_url, catcher_args = compose_settings("catcher")
    consumer_url, consumer_args = compose_settings("consumer")
    assert "--wait-replicas" in catcher_args, catcher_args  # what makes the failover lose nothing
    # The group monitors the service under the file's name, so the URL keeps it.
    group = sentinel_group_factory(service=RedisTarget.parse(catcher_url).service)

    catcher = catcher_factory(on_the_group(catcher_url, group), *catcher_args)
    output = tmp_path / "central.jsonl"
    # JSON lines, so that the test can read each record's sender and number back.
    consumer = consumer_factory(on_the_group(consumer_url, group), output, *consumer_args, "--format", "json")
    senders = start_senders(catcher.port, CLIENTS, COUNT, patient=True, rate=RATE)
    wait_until(lambda: count_json_lines(output) >= 1000, timeout=60, what="lines before the kill")

    old = group.current_master()
    old.stop(signal.SIGKILL)  # never started again
    new = group.wait_for_new_master(old)
    assert new is group.replica

    reports = finish_senders(senders)
    assert all(report["errors"] == 0 for report in reports), reports
    wait_until(lambda: count_json_lines(output) >= CLIENTS * COUNT, timeout=120, what="every record in the file")
    records = [(record["client_id"], record["seq"]) for record in json_lines(output)]
    assert_each_record_once_in_order(records, CLIENTS, COUNT)

    assert consumer.stop() == 0
    catcher.stop()
    assert "Traceback" not in consumer.log + catcher.log
