"""The central file rotated under load, by logrelay itself and by the real logrotate, with kill -9 thrown in."""

from __future__ import annotations

import gzip
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from consumers.segments import list_segments
from tests.support.clients import finish_senders, start_senders
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess, ConsumerProcess, kill_at_random_moments
from tests.support.realredis import RedisServer
from tests.support.streams import assert_each_record_once_in_order, entries_added, group_info, json_lines

pytestmark = pytest.mark.integration

CatcherFactory = Callable[..., CatcherProcess]
ConsumerFactory = Callable[..., ConsumerProcess]

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"


def all_written(server: RedisServer, total: int) -> Callable[[], bool]:
    """Every record the senders sent is in the stream, delivered to the group and acknowledged."""

    def check() -> bool:
        if entries_added(server) < total:
            return False
        info = group_info(server)
        with server.client() as client:
            last = client.xinfo_stream("logrelay")["last-generated-id"]
        return info["pending"] == 0 and info["last-delivered-id"] == last

    return check


def records_in(files: list[Path]) -> list[tuple[str, int]]:
    """(client, seq) of every line of these JSON-lines files, in this order (``.gz`` ones decompressed)."""
    found: list[tuple[str, int]] = []
    for file in files:
        if file.suffix == ".gz":
            plain = file.with_name(file.name + ".read")
            plain.write_bytes(gzip.decompress(file.read_bytes()))
            file = plain
        found += [(record["client_id"], record["seq"]) for record in json_lines(file)]
    return found


def logrelay_files(output: Path) -> list[Path]:
    """The segments in name order, then the file."""
    return [output.with_name(segment.name) for segment in list_segments(output)] + [output]


def logrotate_files(output: Path) -> list[Path]:
    """logrotate's numbered files, oldest (highest number) first, then the file."""
    numbered = []
    for file in output.parent.iterdir():
        suffix = file.name[len(output.name) + 1 :].removesuffix(".gz")
        if file.name.startswith(output.name + ".") and suffix.isdigit():
            numbered.append((int(suffix), file))
    return [file for _, file in sorted(numbered, reverse=True)] + [output]


def test_size_rotation_with_gzip_and_kill_9_at_random_moments_each_record_once(
    redis_server: RedisServer,
    catcher_factory: CatcherFactory,
    consumer_factory: ConsumerFactory,
    tmp_path: Path,
) -> None:
    catcher = catcher_factory(redis_server.url)
    output = tmp_path / "central.jsonl"
    # Small segments and batches: rotations and compressions happen all the time, so kills land in them.
    args = ("--format", "json", "--batch-size", "50", "--rotate-size", "64KiB", "--compress", "gzip")
    # About 10 s of sending: segments are named by the second (one rotation a second at most), so the
    # count of segments follows the time the writing takes, whatever the load on the machine.
    clients, count, rate = 4, 5000, 500.0
    senders = start_senders(catcher.port, clients, count, rate=rate)
    consumer = kill_at_random_moments(
        lambda: consumer_factory(redis_server.url, output, *args), senders, seed=2212, kills=10
    )
    reports = finish_senders(senders)
    assert all(report["errors"] == 0 for report in reports)

    total = clients * count
    wait_until(all_written(redis_server, total), timeout=60, what="every record written and acknowledged")
    assert consumer.stop() == 0
    segments = list_segments(output)
    assert len(segments) >= 5, "too few rotations for the kills to land in them"
    assert not list(tmp_path.glob("*.tmp")), "a temporary file outlived a clean stop"
    names = {segment.name for segment in segments}
    assert not [name for name in names if name + ".gz" in names], "a segment in two files"
    assert_each_record_once_in_order(records_in(logrelay_files(output)), clients, count)
    # Restarted after the stop, the keeper compresses what the stop left plain.
    consumer = consumer_factory(redis_server.url, output, *args)
    wait_until(lambda: all(s.compressed for s in list_segments(output)), timeout=30, what="every segment compressed")
    assert consumer.stop() == 0
    assert "Traceback" not in consumer.log


def readme_logrotate_config(tmp_path: Path, output: Path) -> Path:
    """The README's logrotate snippet, for ``output`` (and without a user and group to create the file for)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    snippet = readme[readme.index("/var/log/central.log {") :]
    snippet = snippet[: snippet.index("```")]
    snippet = snippet.replace("/var/log/central.log", str(output)).replace(
        "create 0640 logrelay logrelay", "create 0640"
    )
    config = tmp_path / "logrotate.conf"
    config.write_text(snippet)
    config.chmod(0o644)
    return config


def renaming_only_config(tmp_path: Path, output: Path) -> Path:
    """logrotate renaming the file and creating a new one, with no SIGHUP: as if the consumer died before it."""
    config = tmp_path / "logrotate-no-hup.conf"
    config.write_text(f"{output} {{\n    rotate 5\n    create 0640\n    missingok\n}}\n")
    config.chmod(0o644)
    return config


def logrotate(config: Path, state: Path) -> None:
    done = subprocess.run(
        [LOGROTATE, "--force", "--state", str(state), str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_the_readmes_logrotate_recipe_under_load_each_record_once(
    redis_server: RedisServer,
    catcher_factory: CatcherFactory,
    consumer_factory: ConsumerFactory,
    tmp_path: Path,
) -> None:
    catcher = catcher_factory(redis_server.url)
    output = tmp_path / "central.jsonl"
    consumer = consumer_factory(redis_server.url, output, "--format", "json", "--batch-size", "50")
    config = readme_logrotate_config(tmp_path, output)
    clients, count, rate = 4, 4000, 1000.0  # 4 s of logging
    senders = start_senders(catcher.port, clients, count, rate=rate)
    rotations = 5
    for done in range(rotations):
        wait_until(lambda: output.exists() and output.stat().st_size > 20_000, timeout=30, what="lines in the file")
        logrotate(config, tmp_path / "logrotate.state")
        wait_until(lambda n=done + 1: consumer.log.count("reopened ") >= n, timeout=30, what=f"reopen {done + 1}")
    reports = finish_senders(senders)
    assert all(report["errors"] == 0 for report in reports)

    wait_until(all_written(redis_server, clients * count), timeout=60, what="every record written")
    consumer.check_running()  # SIGHUP reopened; it did not end the process
    assert consumer.stop() == 0
    files = logrotate_files(output)
    assert len(files) == rotations + 1
    assert any(file.suffix == ".gz" for file in files)  # logrotate compressed the older ones
    assert_each_record_once_in_order(records_in(files), clients, count)
    assert (output.stat().st_mode & 0o777) == 0o640  # logrotate's create, kept by the reopen


def test_a_kill_between_logrotates_rename_and_the_reopen_each_record_once(
    redis_server: RedisServer,
    catcher_factory: CatcherFactory,
    consumer_factory: ConsumerFactory,
    tmp_path: Path,
) -> None:
    catcher = catcher_factory(redis_server.url)
    output = tmp_path / "central.jsonl"
    args = ("--format", "json", "--batch-size", "50")
    consumer = consumer_factory(redis_server.url, output, *args)
    config = renaming_only_config(tmp_path, output)  # the consumer goes on in the renamed file
    clients, count, rate = 4, 2500, 1000.0
    senders = start_senders(catcher.port, clients, count, rate=rate)
    wait_until(lambda: output.exists() and output.stat().st_size > 10_000, timeout=30, what="lines before rotating")
    logrotate(config, tmp_path / "logrotate.state")
    rotated = output.with_name(output.name + ".1")
    size = rotated.stat().st_size
    wait_until(lambda: rotated.stat().st_size > size, timeout=30, what="lines into the renamed file")
    consumer.signal(signal.SIGKILL)
    consumer.wait(10)
    consumer = consumer_factory(redis_server.url, output, *args)
    assert "was renamed to central.jsonl.1 before the consumer reopened it" in consumer.log
    reports = finish_senders(senders)
    assert all(report["errors"] == 0 for report in reports)

    wait_until(all_written(redis_server, clients * count), timeout=60, what="every record written")
    assert consumer.stop() == 0
    assert_each_record_once_in_order(records_in([rotated, output]), clients, count)
