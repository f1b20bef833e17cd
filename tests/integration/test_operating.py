"""A day of operating logrelay, as a new user would try it, on a real Redis with real processes.

One config file for every command; a catcher with a small decoded-size limit
and JSON logs; a consumer with its health endpoint; stock SocketHandler
senders.  Then: ``/readyz`` and ``/metrics``; the consumer stopped, and
``status --json`` shows its group's lag and the refused record; ``tail -n``
shows the newest records; ``dead-letters replay`` with a raised limit, run
twice; the consumer back, and every record in the file once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.clients import stock_logger
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess, ConsumerProcess
from tests.support.realredis import RedisServer, free_port
from tests.support.streams import json_lines, stream_length

pytestmark = pytest.mark.integration

BIG = "big " + "x" * 200_000


def logrelay(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m relay ARGS --config FILE`` as a user runs it (no option from the environment)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOGRELAY_") or "PURE" in key}
    command = [sys.executable, "-m", "relay", *args, "--config", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)


def status(config: Path, *args: str) -> dict[str, Any]:
    result = logrelay(config, "status", "--json", *args)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = orjson.loads(result.stdout)
    return report


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str) -> float | None:
    """The value of the sample ``name`` (without labels) in Prometheus' text format; None if it is not there."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_status_tail_replay_health_and_a_config_file(
    redis_server: RedisServer,
    catcher_factory: Callable[..., CatcherProcess],
    consumer_factory: Callable[..., ConsumerProcess],
    tmp_path: Path,
) -> None:
    health = free_port()
    config = tmp_path / "logrelay.toml"
    config.write_text(
        f'redis-url = "{redis_server.url}"\n'
        '[catch]\nmax-decoded-bytes = "64KiB"\nlog-format = "json"\n'
        f'[consume.file]\nformat = "json"\nhealth-listen = "127.0.0.1:{health}"\n'
    )
    catcher = catcher_factory("", "--config", str(config))  # its Redis URL from the file
    output = tmp_path / "central.log"
    consumer = consumer_factory(redis_server.url, output, "--config", str(config))
    with stock_logger("operating.day", catcher.port) as logger:
        for n in range(20):
            logger.warning("record %d", n)
        logger.error(BIG)
        wait_until(lambda: len(json_lines(output, writer_running=True)) == 20, timeout=30, what="20 lines")
        wait_until(lambda: stream_length(redis_server, "{logrelay}:dead") == 1, timeout=20, what="the dead letter")

        # The consumer's health endpoint.
        assert get(health, "/livez")[0] == 200
        assert get(health, "/readyz") == (200, "ready\n")
        code, metrics = get(health, "/metrics")
        assert code == 200
        assert metric(metrics, "logrelay_consumer_lines_written_total") == 20
        wait_until(lambda: metric(get(health, "/metrics")[1], "logrelay_consumer_lag") == 0, timeout=20, what="lag 0")

        # Both processes beat.
        wait_until(
            lambda: {p["kind"] for p in status(config)["processes"]} == {"catcher", "consumer"},
            timeout=20,
            what="a catcher and a consumer in status",
        )

        # The consumer stops; records keep coming: its group lags.
        assert consumer.stop() == 0
        for n in range(5):
            logger.warning("later %d", n)
        wait_until(lambda: stream_length(redis_server) == 25, timeout=20, what="25 entries in the stream")
        report = status(config)
        ((group),) = report["groups"]
        assert (group["name"], group["lag"], group["pending"]) == ("logrelay-file", 5, 0)
        assert report["dead_letters"] == 1
        assert report["newest_dead_letters"][0]["reason"] == "decoded record exceeds the maximum decoded size"
        assert [p["kind"] for p in report["processes"]] == ["catcher"]  # a clean stop leaves at once
        lagging = logrelay(config, "status", "--max-lag", "4")
        assert lagging.returncode == 1
        assert "group 'logrelay-file' has 5 entries left to read (more than --max-lag 4)" in lagging.stderr

        # What is arriving right now, without a consumer group.
        newest = logrelay(config, "tail", "-n", "3", "--format", "json")
        assert newest.returncode == 0, newest.stderr
        assert [orjson.loads(line)["msg"] for line in newest.stdout.splitlines()] == ["later 2", "later 3", "later 4"]

        # The refused record, replayed with a raised limit: twice, delivered once.
        listed = logrelay(config, "dead-letters", "list", "--json")
        ((letter),) = orjson.loads(listed.stdout)
        assert letter["reason"] == "decoded record exceeds the maximum decoded size"
        for expected in ("replayed 1, still refused 0", "no dead letters in {logrelay}:dead"):
            replay = logrelay(config, "dead-letters", "replay", "--all", "--max-decoded-bytes", "4MiB")
            assert replay.returncode == 0, replay.stderr
            assert replay.stdout.splitlines()[-1] == expected

        # The consumer back: it catches up, and status says so.
        consumer.start()
        wait_until(lambda: len(json_lines(output, writer_running=True)) == 26, timeout=30, what="26 lines")
        wait_until(lambda: logrelay(config, "status", "--max-lag", "0").returncode == 0, timeout=20, what="no lag")

    messages = [line["msg"] for line in json_lines(output)]
    assert messages == [f"record {n}" for n in range(20)] + [f"later {n}" for n in range(5)] + [BIG]
    # The catcher's own logs were JSON lines (--log-format json from the file).
    started = [orjson.loads(line) for line in catcher.log.splitlines() if line.startswith("{")]
    assert any(line["message"].startswith("catching on 127.0.0.1:") for line in started)
    assert all(set(line) >= {"time", "level", "logger", "message"} for line in started)
