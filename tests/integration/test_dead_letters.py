"""Dead letters replayed for real: a catcher refuses a record under a small limit, ``logrelay dead-letters
replay`` (a child process, run twice) puts it back, a real consumer writes it into the file once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.clients import stock_logger
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess, ConsumerProcess
from tests.support.realredis import RedisServer
from tests.support.streams import json_lines, stream_length

pytestmark = pytest.mark.integration

BIG = "big " + "x" * 200_000


def replay_all(server: RedisServer, *extra: str) -> subprocess.CompletedProcess[str]:
    """``python -m relay dead-letters replay --all`` as a user runs it (no option from the environment)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOGRELAY_") or "PURE" in key}
    args = [sys.executable, "-m", "relay", "dead-letters", "replay", "--all", "--redis-url", server.url, *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, check=False)


def test_a_refused_record_replayed_twice_is_written_once(
    redis_server: RedisServer,
    catcher_factory: Callable[..., CatcherProcess],
    consumer_factory: Callable[..., ConsumerProcess],
    tmp_path: Path,
) -> None:
    catcher = catcher_factory(redis_server.url, "--max-decoded-bytes", "64KiB")
    output = tmp_path / "central.log"
    consumer_factory(redis_server.url, output, "--format", "json")
    with stock_logger("dead.letters.replay", catcher.port) as logger:
        logger.error(BIG)
        logger.warning("small")
        wait_until(lambda: stream_length(redis_server, "{logrelay}:dead") == 1, timeout=20, what="the dead letter")
        wait_until(lambda: [line["msg"] for line in json_lines(output)] == ["small"], timeout=20, what="small")
        with redis_server.client() as client:
            ((_, letter),) = client.xrange("{logrelay}:dead")
        assert letter[b"reason"] == b"decoded record exceeds the maximum decoded size"

        first = replay_all(redis_server, "--max-decoded-bytes", "4MiB")
        assert first.returncode == 0, first.stderr
        assert first.stdout.splitlines()[-1] == "replayed 1, still refused 0"
        second = replay_all(redis_server, "--max-decoded-bytes", "4MiB")
        assert second.returncode == 0, second.stderr
        assert second.stdout == "no dead letters in {logrelay}:dead\n"
        assert stream_length(redis_server, "{logrelay}:dead") == 0

        # The consumer writes in stream order: once "after" is in the file,
        # anything the replays added before it is there too.
        logger.warning("after")
        wait_until(lambda: "after" in [line["msg"] for line in json_lines(output)], timeout=30, what="after")

    lines = json_lines(output)
    assert [line["msg"] for line in lines] == ["small", BIG, "after"]
    big = lines[1]
    assert big["levelname"] == "ERROR"
    assert big["name"] == "dead.letters.replay"
    # Its original client, catcher and time, not the replay's.
    relay = big["logrelay"]
    assert relay["client"] == letter[b"client"].decode()
    assert relay["received"] == float(letter[b"received"])
    assert relay["catcher"] == letter[b"catcher"].decode()
