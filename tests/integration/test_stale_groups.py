"""A consumer group left behind holds the stream: logrelay names it, and loses nothing.

A group created by hand (XGROUP CREATE) and never read keeps every entry
from being trimmed; with a small ``--max-stream-length`` the catcher soon
holds records back.  The consumer warns about the group by name with the
entries it holds and counts it in ``/metrics``; the catcher's ``/readyz``
names the group instead of blaming Redis; ``logrelay status`` marks it.
Once the group is destroyed, every record the stock senders sent reaches
the file exactly once.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_faults import file_records, lines_at_least
from tests.integration.test_operating import get
from tests.support.clients import finish_senders, start_senders
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess, ConsumerProcess
from tests.support.realredis import RedisServer, free_port
from tests.support.streams import assert_each_record_once_in_order, group_info

pytestmark = pytest.mark.integration

MAX_LENGTH = 300
CLIENTS, COUNT = 2, 400


def stale_entries(metrics_text: str) -> dict[str, float]:
    """``logrelay_consumer_stale_group_entries`` by group, and the unlabelled ``logrelay_consumer_stale_groups``."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "logrelay_consumer_stale_group_entries":
                found[sample.labels["group"]] = sample.value
            elif sample.name == "logrelay_consumer_stale_groups":
                found[""] = sample.value
    return found


def test_a_leftover_group_is_named_by_readiness_warnings_metrics_and_status_and_nothing_is_lost(
    redis_server: RedisServer,
    catcher_factory: Callable[..., CatcherProcess],
    consumer_factory: Callable[..., ConsumerProcess],
    tmp_path: Path,
) -> None:
    with redis_server.client() as client:
        client.xgroup_create("logrelay", "leftover", "$", mkstream=True)
    output = tmp_path / "central.log"
    consumer_health, catcher_health = free_port(), free_port()
    consumer = consumer_factory(
        redis_server.url,
        output,
        "--format",
        "json",
        "--trim-interval",
        "0.2",
        "--stale-group-after",
        "2s",
        "--health-listen",
        f"127.0.0.1:{consumer_health}",
    )
    catcher = catcher_factory(
        redis_server.url,
        "--max-stream-length",
        str(MAX_LENGTH),
        "--health-listen",
        f"127.0.0.1:{catcher_health}",
    )
    senders = start_senders(catcher.port, CLIENTS, COUNT)

    # The catcher is held back by the group, not by Redis: /readyz says which group and how much it holds.
    def full_reason() -> str:
        status, body = get(catcher_health, "/readyz")
        return body if status == 503 and "leftover" in body else ""

    reason = wait_until(full_reason, timeout=60, what="/readyz naming the leftover group")
    held = re.fullmatch(r"stream full \(300 entries\): group 'leftover' holds (\d+) entries \(no consumer\)\n", reason)
    assert held is not None, reason
    assert MAX_LENGTH - 1000 <= int(held[1]) <= MAX_LENGTH  # a whole batch is written or none of it
    assert "Redis unreachable" not in reason
    finish_senders(senders)

    # The real consumer is caught up: everything in the stream is written, its group has nothing to read.
    wait_until(lambda: group_info(redis_server)["lag"] == 0, timeout=30, what="the real consumer caught up")
    assert get(consumer_health, "/readyz") == (200, "ready\n")

    def warning() -> re.Match[str] | None:
        return re.search(
            r"WARNING logrelay\.consumer: consumer group 'leftover' of stream 'logrelay' looks abandoned "
            r"\(no consumer; --stale-group-after 2s\): it holds (\d+) entries \(lag (\d+), pending 0\)",
            consumer.log,
        )

    found = wait_until(warning, timeout=30, what="the consumer's warning about the leftover group")
    assert int(found[1]) == int(found[2]) > 0
    with redis_server.client() as client:
        in_stream = int(client.xlen("logrelay"))

    def metric_settled() -> dict[str, float]:
        metrics = stale_entries(get(consumer_health, "/metrics")[1])
        return metrics if metrics.get("leftover") == in_stream else {}

    assert wait_until(metric_settled, timeout=30, what="the stale group's entries in /metrics") == {
        "": 1.0,
        "leftover": float(in_stream),
    }
    # Warned once, not on every look (one a second with this threshold).
    assert consumer.log.count("'leftover' of stream 'logrelay' looks abandoned") == 1

    report = subprocess.run(
        [sys.executable, "-m", "relay", "status", "--redis-url", redis_server.url, "--stale-group-after", "2s"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert re.search(r"leftover\s+[\d,]+\s+0\s+0-0\s+none\s+stale", report), report

    # Destroyed: trimming goes on, the catcher publishes what it held, and nothing is lost or doubled.
    with redis_server.client() as client:
        client.xgroup_destroy("logrelay", "leftover")
    wait_until(lines_at_least(output, CLIENTS * COUNT), timeout=60, what="every record in the file")
    wait_until(lambda: get(catcher_health, "/readyz") == (200, "ready\n"), timeout=30, what="the catcher ready")
    wait_until(lambda: stale_entries(get(consumer_health, "/metrics")[1]) == {"": 0.0}, timeout=30, what="no stale")
    assert catcher.stop() == 0
    assert consumer.stop() == 0
    assert_each_record_once_in_order(file_records(output), CLIENTS, COUNT)
    assert "consumer group 'leftover' of stream 'logrelay' is no longer stale" in consumer.log
    assert re.search(r"stream full \(300 entries\): group 'leftover' holds \d+ entries", catcher.log)


def test_a_consumer_back_after_a_downtime_does_not_call_its_own_group_abandoned(
    redis_server: RedisServer, consumer_factory: Callable[..., ConsumerProcess], tmp_path: Path
) -> None:
    # The consumer was down longer than --stale-group-after while the catchers published: its group's
    # consumers have not read for that long when it starts, and it looks at the groups before its first read.
    with redis_server.client() as client:
        client.xgroup_create("logrelay", "logrelay-file", "$", mkstream=True)
        client.xgroup_create("logrelay", "leftover", "$")
        client.xadd("logrelay", {"n": "0"})
        assert client.xreadgroup("logrelay-file", "before-the-downtime", {"logrelay": ">"})
        client.xadd("logrelay", {"n": "1"})  # published during the downtime: the group holds it

        def downtime_over() -> bool:
            return all(c["idle"] > 1500 for c in client.xinfo_consumers("logrelay", "logrelay-file"))

        wait_until(downtime_over, timeout=30, what="the old consumer idle past --stale-group-after")
    consumer = consumer_factory(redis_server.url, tmp_path / "central.log", "--stale-group-after", "1s")

    # A look at the groups has been logged (the leftover one is abandoned): the consumer's own is not named.
    wait_until(lambda: "'leftover' of stream 'logrelay' looks abandoned" in consumer.log, timeout=30, what="a look")
    assert "'logrelay-file' of stream 'logrelay' looks abandoned" not in consumer.log
    assert consumer.stop() == 0
