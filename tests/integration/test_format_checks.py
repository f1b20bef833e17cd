"""``--format`` mistakes, made with a real consumer on a real redis-server: told at start, no record lost or spoiled."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.clients import finish_senders, start_senders
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess, ConsumerProcess
from tests.support.realredis import RedisServer
from tests.support.streams import assert_each_record_once_in_order, entries_added, json_lines, stream_length

pytestmark = pytest.mark.integration

CatcherFactory = Callable[..., CatcherProcess]
ConsumerFactory = Callable[..., ConsumerProcess]

TEXT_FORMAT = "%(client_id)s|%(seq)s|%(levelname)s|%(message)s"
TEXT_LINE = re.compile(r"^(c\d+)\|(\d+)\|(\w+)\|record \d+ from c\d+.*$")
CLIENTS, COUNT = 3, 200


def logrelay(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """``python -m relay ARGS`` as a user runs it: only the given LOGRELAY_ variables (and the speedups' switch)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOGRELAY_") or "PURE" in key}
    return subprocess.run(
        [sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=60, env={**env, **variables}
    )


def publish(catcher_factory: CatcherFactory, redis_server: RedisServer) -> None:
    """CLIENTS × COUNT records from real SocketHandler clients, all in the stream on return."""
    with redis_server.client() as client:
        before = entries_added(redis_server) if client.exists("logrelay") else 0
    catcher = catcher_factory(redis_server.url)
    reports = finish_senders(start_senders(catcher.port, CLIENTS, COUNT))
    assert all(report["errors"] == 0 for report in reports)
    assert catcher.stop() == 0  # it publishes everything it accepted before it exits
    assert entries_added(redis_server) == before + CLIENTS * COUNT


def text_records(path: Path) -> list[tuple[str, int]]:
    """(client, seq) of each record's line, after checking each is a line of TEXT_FORMAT.

    The senders' every 97th record carries a traceback: its lines follow the record's, as logging writes them.
    """
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.startswith(("Traceback ", "  ", "ValueError: ")):
            continue
        match = TEXT_LINE.match(line)
        assert match, f"not a line of {TEXT_FORMAT!r}: {line!r}"
        found.append((match[1], int(match[2])))
    return found


@pytest.mark.parametrize(
    ("command", "fmt", "message"),
    [
        (
            ["consume", "file"],
            "%(asctime)s %(levelname) %(message)s",
            "Invalid value for (--format, LOGRELAY_CONSUME_FILE_FORMAT): "
            "missing conversion character after %(levelname): write e.g. %(levelname)s",
        ),
        (
            ["consume", "file"],
            "%(message)d",
            "Invalid value for (--format, LOGRELAY_CONSUME_FILE_FORMAT): %(message)d cannot render message, a str",
        ),
        (
            ["consume", "file"],
            "%(message)s %(x",
            "Invalid value for (--format, LOGRELAY_CONSUME_FILE_FORMAT): '%(x' has no closing parenthesis",
        ),
        (["up"], "%(levelname)", "Invalid value for (--format, LOGRELAY_UP_FORMAT): missing conversion character"),
    ],
)
@pytest.mark.parametrize("given_by", ["option", "variable"])
def test_a_format_that_cannot_render_is_a_usage_error_at_start_and_nothing_is_dead_lettered(
    redis_server: RedisServer,
    catcher_factory: CatcherFactory,
    consumer_factory: ConsumerFactory,
    tmp_path: Path,
    command: list[str],
    fmt: str,
    message: str,
    given_by: str,
) -> None:
    publish(catcher_factory, redis_server)
    output = tmp_path / "central.log"
    args = [*command, "--output", str(output), "--redis-url", redis_server.url]
    if command == ["up"]:
        args += ["--listen", "127.0.0.1:0"]
    variable = f"LOGRELAY_{'_'.join(command).upper()}_FORMAT"
    refused = logrelay(*args, "--format", fmt) if given_by == "option" else logrelay(*args, **{variable: fmt})
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.splitlines()[-1].startswith(f"Error: {message}")
    assert "Traceback" not in refused.stderr
    assert not output.exists()
    assert stream_length(redis_server, "{logrelay}:dead") == 0

    # The right format then writes every record, once.
    consumer = consumer_factory(redis_server.url, output, "--format", TEXT_FORMAT)
    wait_until(lambda: len(text_records(output)) >= CLIENTS * COUNT, timeout=60, what="every line")
    assert consumer.stop() == 0
    assert_each_record_once_in_order(text_records(output), CLIENTS, COUNT)


def test_a_mistyped_field_is_a_warning_at_start_and_renders_as_the_placeholder(
    redis_server: RedisServer, catcher_factory: CatcherFactory, consumer_factory: ConsumerFactory, tmp_path: Path
) -> None:
    publish(catcher_factory, redis_server)
    output = tmp_path / "central.log"
    consumer = consumer_factory(redis_server.url, output, "--format", TEXT_FORMAT + "|%(levelnam)s")
    wait_until(lambda: len(text_records(output)) >= CLIENTS * COUNT, timeout=60, what="every line")
    assert consumer.stop() == 0
    assert (
        "--format field %(levelnam)s is not a LogRecord attribute or relay field; did you mean %(levelname)s? "
        "it will render as '-' on records without it"
    ) in consumer.log
    assert_each_record_once_in_order(text_records(output), CLIENTS, COUNT)
    record_lines = [line for line in output.read_text().splitlines() if line.startswith("c")]
    assert len(record_lines) == CLIENTS * COUNT
    assert all(line.endswith("|-") for line in record_lines)


def test_a_restart_with_another_format_rotates_the_file_so_that_none_mixes_two(
    redis_server: RedisServer, catcher_factory: CatcherFactory, consumer_factory: ConsumerFactory, tmp_path: Path
) -> None:
    output = tmp_path / "central.log"
    publish(catcher_factory, redis_server)
    text = consumer_factory(redis_server.url, output, "--format", TEXT_FORMAT)
    wait_until(lambda: len(text_records(output)) >= CLIENTS * COUNT, timeout=60, what="the text lines")
    assert text.stop() == 0
    written_as_text = output.read_bytes()

    # More records, then the same output with --format json: the text file becomes a segment.
    publish(catcher_factory, redis_server)
    as_json = consumer_factory(redis_server.url, output, "--format", "json")
    wait_until(
        lambda: len(json_lines(output, writer_running=True)) >= CLIENTS * COUNT, timeout=60, what="the JSON lines"
    )
    assert as_json.stop() == 0
    (segment,) = [path for path in tmp_path.iterdir() if path.name.startswith("central.log.2")]
    assert re.search(
        rf"central\.log was written with --format {re.escape(repr(TEXT_FORMAT))}; this run's is 'json': "
        rf"rotated it to {segment.name}, new lines go to a new central\.log",
        as_json.log,
    )
    assert segment.read_bytes() == written_as_text
    assert_each_record_once_in_order(text_records(segment), CLIENTS, COUNT)
    assert_each_record_once_in_order([(r["client_id"], r["seq"]) for r in json_lines(output)], CLIENTS, COUNT)

    # The same format again: no new segment, the file goes on.
    again = consumer_factory(redis_server.url, output, "--format", "json")
    assert again.stop() == 0
    assert "rotated" not in again.log
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith("central.log.2")] == [segment.name]
    assert len(json_lines(output)) == CLIENTS * COUNT


def test_a_symlinked_output_of_another_format_is_refused_not_replaced_by_a_new_file(
    redis_server: RedisServer, catcher_factory: CatcherFactory, consumer_factory: ConsumerFactory, tmp_path: Path
) -> None:
    # The central file lives on the big disk; the usual path is a link to it.  Rotating for the new format
    # would rename the link and create a plain file in the link's directory: the lines would leave the disk
    # they were meant for, without a word about it.
    (tmp_path / "data").mkdir()
    (tmp_path / "logs").mkdir()
    target = tmp_path / "data" / "central.log"
    output = tmp_path / "logs" / "central.log"
    output.symlink_to(target)
    publish(catcher_factory, redis_server)
    text = consumer_factory(redis_server.url, output, "--format", TEXT_FORMAT)
    wait_until(lambda: len(text_records(target)) >= CLIENTS * COUNT, timeout=60, what="the text lines")
    assert text.stop() == 0
    written_as_text = target.read_bytes()

    as_json = consumer_factory(redis_server.url, output, "--format", "json", wait_ready=False)
    assert as_json.wait() == 1
    (line,) = [line for line in as_json.log.splitlines() if line.startswith("Error")]
    assert f"--output {output} is a symbolic link" in line
    assert "Traceback" not in as_json.log
    assert output.is_symlink()
    assert output.resolve() == target
    assert target.read_bytes() == written_as_text
    assert not [path for path in (tmp_path / "logs").iterdir() if path.name.startswith("central.log.2")]
