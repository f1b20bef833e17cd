"""``logrelay consume file`` and ``logrelay up`` as processes, end to end from real SocketHandler clients."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import finish_senders, start_senders
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess, ConsumerProcess, kill_at_random_moments
from tests.support.realredis import RedisServer, free_port
from tests.support.streams import assert_each_record_once_in_order, count_json_lines, group_pending, json_lines

pytestmark = pytest.mark.integration

CatcherFactory = Callable[..., CatcherProcess]
ConsumerFactory = Callable[..., ConsumerProcess]

TEXT_FORMAT = "%(client_id)s|%(seq)d|%(levelname)s|%(name)s|%(client)s|%(message)s"
TEXT_LINE = re.compile(r"^(c\d+)\|(\d+)\|(\w+)\|([\w.]+)\|(127\.0\.0\.1:\d+)\|(.*)$")


def test_end_to_end_text_and_json_files_hold_every_record_once(
    redis_server: RedisServer,
    catcher_factory: CatcherFactory,
    consumer_factory: ConsumerFactory,
    tmp_path: Path,
) -> None:
    catcher = catcher_factory(redis_server.url)
    text_path, json_path = tmp_path / "central.log", tmp_path / "central.jsonl"
    text = consumer_factory(redis_server.url, text_path, "--format", TEXT_FORMAT, "--group", "text")
    as_json = consumer_factory(redis_server.url, json_path, "--format", "json", "--group", "json")
    clients, count = 6, 800
    reports = finish_senders(start_senders(catcher.port, clients, count))
    assert all(report["errors"] == 0 for report in reports)

    wait_until(lambda: count_json_lines(json_path) >= clients * count, timeout=60, what="JSON lines")
    records = json_lines(json_path)
    assert_each_record_once_in_order([(r["client_id"], r["seq"]) for r in records], clients, count)
    for record in records:
        seq, client_id = record["seq"], record["client_id"]
        assert record["name"] == f"client.{client_id}"
        assert record["levelname"] == ("ERROR" if seq % 97 == 0 else "INFO")
        assert record["msg"].startswith(f"record {seq} from {client_id}")
        assert record["args"] is None
        assert isinstance(record["created"], float)
        assert record["logrelay"]["client"].startswith("127.0.0.1:")
        assert record["logrelay"]["catcher"]
        assert record["logrelay"]["received"] >= record["created"] - 1
        if seq % 97 == 0:
            assert "ValueError: failure number" in record["exc_text"]

    def parsed_text() -> list[re.Match[str]]:
        return [m for line in text_path.read_text().splitlines() if (m := TEXT_LINE.match(line))]

    wait_until(lambda: len(parsed_text()) >= clients * count, timeout=60, what="text lines")
    matches = parsed_text()
    assert_each_record_once_in_order([(m[1], int(m[2])) for m in matches], clients, count)
    by_key = {(r["client_id"], r["seq"]): r for r in records}
    for m in matches:
        record = by_key[(m[1], int(m[2]))]
        assert m[3] == record["levelname"]
        assert m[4] == record["name"]
        assert m[5] == record["logrelay"]["client"]
        assert m[6] == record["msg"]
    # Tracebacks follow their record's line, as logging.Formatter writes them.
    assert text_path.read_text().count("ValueError: failure number") == sum(1 for r in records if r["seq"] % 97 == 0)

    assert text.stop() == 0
    assert as_json.stop() == 0
    assert group_pending(redis_server, "text") == 0
    assert group_pending(redis_server, "json") == 0


def test_kill_9_of_the_consumer_at_random_moments_leaves_each_record_once(
    redis_server: RedisServer,
    catcher_factory: CatcherFactory,
    consumer_factory: ConsumerFactory,
    tmp_path: Path,
) -> None:
    catcher = catcher_factory(redis_server.url)
    output = tmp_path / "central.jsonl"
    # Small batches and page-cache writes: many write/checkpoint/ack cycles to land a kill in.
    args = ("--format", "json", "--batch-size", "50", "--fsync", "never")
    clients, count, rate = 4, 6000, 1000.0
    senders = start_senders(catcher.port, clients, count, rate=rate)
    # Kill it at least 8 times, while records flow and after (recovery with entries pending).
    consumer = kill_at_random_moments(
        lambda: consumer_factory(redis_server.url, output, *args),
        senders,
        seed=2026,
        kills=8,
        longest=0.4,
        after_restart=lambda: json_lines(output, writer_running=True),  # recovered: no torn line before the tail
    )
    reports = finish_senders(senders)
    assert all(report["errors"] == 0 for report in reports)

    wait_until(lambda: count_json_lines(output) >= clients * count, timeout=60, what="all lines after the crashes")
    records = json_lines(output)
    assert_each_record_once_in_order([(r["client_id"], r["seq"]) for r in records], clients, count)
    assert consumer.stop() == 0
    assert group_pending(redis_server) == 0


def test_a_standby_consumer_takes_over_when_the_writer_dies(
    redis_server: RedisServer,
    catcher_factory: CatcherFactory,
    consumer_factory: ConsumerFactory,
    tmp_path: Path,
) -> None:
    catcher = catcher_factory(redis_server.url)
    output = tmp_path / "central.jsonl"
    active = consumer_factory(redis_server.url, output, "--format", "json", "--consumer", "a")
    standby = consumer_factory(redis_server.url, output, "--format", "json", "--consumer", "b")
    assert active.writing
    assert "standing by" in standby.log

    senders = start_senders(catcher.port, 3, 2000, rate=1000)
    wait_until(lambda: count_json_lines(output) > 500, timeout=30, what="the active consumer writing")
    active.signal(signal.SIGKILL)
    wait_until(lambda: "took over" in standby.log, timeout=30, what="the standby taking over")
    finish_senders(senders)

    wait_until(lambda: count_json_lines(output) >= 6000, timeout=60, what="all lines")
    records = json_lines(output)
    assert_each_record_once_in_order([(r["client_id"], r["seq"]) for r in records], 3, 2000)
    assert standby.stop() == 0
    assert group_pending(redis_server) == 0


def test_sigterm_finishes_the_batch_in_hand_and_exits_zero(
    redis_server: RedisServer,
    catcher_factory: CatcherFactory,
    consumer_factory: ConsumerFactory,
    tmp_path: Path,
) -> None:
    catcher = catcher_factory(redis_server.url)
    output = tmp_path / "central.jsonl"
    consumer = consumer_factory(redis_server.url, output, "--format", "json", "--batch-size", "100")
    senders = start_senders(catcher.port, 2, 3000)
    wait_until(lambda: count_json_lines(output) > 0, timeout=30, what="first lines")
    assert consumer.stop() == 0
    finish_senders(senders)
    # Whatever it wrote is acknowledged, and nothing it acknowledged is missing.
    written = json_lines(output)
    with redis_server.client() as client:
        acked_and_pending = client.xinfo_groups("logrelay")[0]
    assert int(acked_and_pending["pending"]) == 0
    assert int(acked_and_pending["entries-read"]) == len(written)
    assert "stop requested" in consumer.log


def test_unformattable_entries_go_to_dead_letters_and_the_file_goes_on(
    redis_server: RedisServer, consumer_factory: ConsumerFactory, tmp_path: Path
) -> None:
    output = tmp_path / "central.log"
    with redis_server.client() as client:
        client.xadd("logrelay", {"v": "1", "record": json.dumps({"msg": "before", "name": "t"})})
        bad = client.xadd("logrelay", {"v": "1", "record": "{this is not json"})
        future = client.xadd("logrelay", {"v": "9", "record": "{}"})
        client.xadd("logrelay", {"v": "1", "record": json.dumps({"msg": "after", "name": "t"})})
    consumer = consumer_factory(redis_server.url, output, "--format", "%(name)s %(message)s")
    wait_until(lambda: output.exists() and output.read_text().count("\n") >= 2, timeout=20, what="good lines")
    assert output.read_text() == "t before\nt after\n"
    wait_until(lambda: group_pending(redis_server) == 0, timeout=10, what="all acknowledged")
    with redis_server.client() as client:
        dead = client.xrange("{logrelay}:dead")
    assert [fields[b"entry_id"] for _, fields in dead] == [bad, future]
    assert b"not valid JSON" in dead[0][1][b"reason"]
    assert b"schema version" in dead[1][1][b"reason"]
    assert dead[0][1][b"record"] == b"{this is not json"
    assert consumer.stop() == 0


def test_up_without_redis_writes_the_central_file(catcher_factory: CatcherFactory, tmp_path: Path) -> None:
    output = tmp_path / "central.jsonl"
    up = catcher_factory("", "--output", str(output), "--format", "json", command="up")
    reports = finish_senders(start_senders(up.port, 3, 500))
    assert all(report["errors"] == 0 for report in reports)
    wait_until(lambda: count_json_lines(output) >= 1500, timeout=30, what="lines from the embedded broker")
    assert up.stop() == 0
    records = json_lines(output)
    assert_each_record_once_in_order([(r["client_id"], r["seq"]) for r in records], 3, 500)
    assert "embedded" in up.log


def test_up_drains_everything_accepted_before_exiting(catcher_factory: CatcherFactory, tmp_path: Path) -> None:
    output = tmp_path / "central.jsonl"
    up = catcher_factory("", "--output", str(output), "--format", "json", command="up")
    senders = start_senders(up.port, 3, 2000, rate=1000)

    def every_client_connected() -> bool:
        return {r["client_id"] for r in json_lines(output, writer_running=True)} == {"c0", "c1", "c2"}

    wait_until(every_client_connected, timeout=30, what="a line from every client")
    up.signal(signal.SIGTERM)
    reports = finish_senders(senders)
    assert up.wait(60) == 0
    assert all(report["errors"] == 0 for report in reports)
    records = json_lines(output)
    # Everything the catcher accepted during the drain reached the file before exit.
    assert_each_record_once_in_order([(r["client_id"], r["seq"]) for r in records], 3, 2000)


def test_the_consumer_trims_what_it_has_written(
    redis_server: RedisServer, catcher_factory: CatcherFactory, consumer_factory: ConsumerFactory, tmp_path: Path
) -> None:
    catcher = catcher_factory(redis_server.url)
    output = tmp_path / "central.jsonl"
    consumer = consumer_factory(redis_server.url, output, "--format", "json", "--trim-interval", "0.2")
    finish_senders(start_senders(catcher.port, 2, 1000))
    wait_until(lambda: count_json_lines(output) >= 2000, timeout=30, what="all lines")

    def stream_length() -> int:
        with redis_server.client() as client:
            return int(client.xlen("logrelay"))

    # Everything acknowledged goes; at most the last delivered entry stays.
    wait_until(lambda: stream_length() <= 1, timeout=10, what="the stream trimmed")
    assert consumer.stop() == 0
    assert_each_record_once_in_order([(r["client_id"], r["seq"]) for r in json_lines(output)], 2, 1000)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scraped(port: int) -> dict[str, float]:
    """The unlabelled samples of /metrics, parsed as Prometheus parses them."""
    _, text = http_get(f"http://127.0.0.1:{port}/metrics")
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples if not s.labels}


def test_consume_file_serves_readiness_and_metrics(
    redis_server: RedisServer, catcher_factory: CatcherFactory, consumer_factory: ConsumerFactory, tmp_path: Path
) -> None:
    catcher = catcher_factory(redis_server.url)
    output = tmp_path / "central.jsonl"
    health = free_port()
    consumer_factory(redis_server.url, output, "--format", "json", "--health-listen", f"127.0.0.1:{health}")
    wait_until(lambda: http_get(f"http://127.0.0.1:{health}/readyz") == (200, "ready\n"), what="consumer ready")
    assert http_get(f"http://127.0.0.1:{health}/livez") == (200, "ok\n")
    reports = finish_senders(start_senders(catcher.port, 2, 300))
    assert all(report["errors"] == 0 for report in reports)
    wait_until(lambda: scraped(health).get("logrelay_consumer_entries_acked_total") == 600, what="600 acknowledged")
    figures = wait_until(lambda: (f := scraped(health)).get("logrelay_consumer_pending") == 0 and f, what="lag read")
    assert figures["logrelay_consumer_lines_written_total"] == 600 == count_json_lines(output)
    assert figures["logrelay_consumer_bytes_written_total"] == output.stat().st_size
    assert figures["logrelay_consumer_sync_seconds_count"] >= 1
    assert figures["logrelay_consumer_lag"] == 0
    assert figures["logrelay_consumer_ready"] == 1


def test_up_serves_both_halves_on_one_endpoint(catcher_factory: CatcherFactory, tmp_path: Path) -> None:
    output = tmp_path / "central.jsonl"
    health = free_port()
    args = ("--output", str(output), "--format", "json", "--health-listen", f"127.0.0.1:{health}")
    up = catcher_factory("", *args, command="up")
    wait_until(lambda: http_get(f"http://127.0.0.1:{health}/readyz") == (200, "ready\n"), what="both halves ready")
    reports = finish_senders(start_senders(up.port, 2, 200))
    assert all(report["errors"] == 0 for report in reports)
    wait_until(lambda: scraped(health).get("logrelay_consumer_entries_acked_total") == 400, what="400 acknowledged")
    figures = scraped(health)
    assert figures["logrelay_catcher_records_published_total"] == 400
    assert figures["logrelay_catcher_publish_seconds_count"] == figures["logrelay_catcher_batches_published_total"]
    assert figures["logrelay_consumer_lines_written_total"] == 400
    assert figures["logrelay_catcher_ready"] == figures["logrelay_consumer_ready"] == 1
    assert up.stop() == 0


def test_a_health_address_in_use_is_one_line_naming_it(redis_server: RedisServer, tmp_path: Path) -> None:
    health = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", health))
        taken.listen()
        command = [sys.executable, "-m", "relay", "consume", "file", "--redis-url", redis_server.url]
        command += ["--output", str(tmp_path / "central.log"), "--health-listen", f"127.0.0.1:{health}"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"Error: cannot listen on 127.0.0.1:{health} (--health-listen): Address already in use" in done.stderr
    assert "Traceback" not in done.stderr
