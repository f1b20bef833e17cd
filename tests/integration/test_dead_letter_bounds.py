"""Dead letters bounded and kept: a catcher under a flood of refused frames keeps about
--dead-letter-max-length of them, counts the rest, and loses no valid record between them; ``logrelay up``
on its embedded broker leaves every dead letter in a file beside the output."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from relay.dead_letter_file import dead_letter_path, read_letters
from tests.support.amplifiers import AMPLIFIERS, frame
from tests.support.clients import wait_for_entries
from tests.support.dead_letters import big_frame
from tests.support.metrics_endpoint import scrape
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess, ConsumerProcess
from tests.support.realredis import RedisServer, free_port
from tests.support.streams import json_lines, stream_length

pytestmark = pytest.mark.integration

BAD_FRAMES = 50
LIMIT = 10
#: Approximate trimming drops whole stream nodes; a node is closed once it holds 4 KiB (stream-node-max-bytes),
#: so with every other letter over 4 KiB a node holds at most two: the stream stays within LIMIT + a node or two.
BOUND = LIMIT + 4
#: Small refused frames (hostile pickles the decoder refuses at once), taken in turn.
HOSTILE = [a for a in AMPLIFIERS if a.refused is not None and len(a.build()) < 1024]


def valid_frame(number: int) -> bytes:
    record = logging.LogRecord("bounds.valid", logging.INFO, __file__, 1, f"valid {number}", None, None)
    return logging.handlers.SocketHandler("unused", 0).makePickle(record)


def bad_frames() -> Iterator[bytes]:
    """:data:`BAD_FRAMES` refused frames: hostile pickles and, in between, records over --max-decoded-bytes 4KiB."""
    for number in range(BAD_FRAMES):
        if number % 2:
            yield big_frame(8000, name=f"bounds.oversize.{number}")
        else:
            yield frame(HOSTILE[number // 2 % len(HOSTILE)].build())


def send_interleaved(port: int) -> None:
    """A valid record before every refused frame, and one after the last, over one connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        for number, bad in enumerate(bad_frames()):
            connection.sendall(valid_frame(number) + bad)
        connection.sendall(valid_frame(BAD_FRAMES))


def test_a_flood_of_refused_frames_keeps_about_the_bound_counts_the_rest_and_loses_no_record(
    redis_server: RedisServer, catcher_factory: Callable[..., CatcherProcess]
) -> None:
    health = free_port()
    catcher = catcher_factory(
        redis_server.url,
        *("--dead-letter-max-length", str(LIMIT), "--max-decoded-bytes", "4KiB"),
        *("--health-listen", f"127.0.0.1:{health}", "--linger-ms", "0"),
    )
    assert len(HOSTILE) >= 3
    send_interleaved(catcher.port)

    with redis_server.client() as client:
        entries = wait_for_entries(client, BAD_FRAMES + 1)
    messages = [json.loads(fields[b"record"])["msg"] for _, fields in entries]
    assert messages == [f"valid {number}" for number in range(BAD_FRAMES + 1)]

    def all_counted() -> dict[str, float] | None:
        samples = scrape(health)
        return samples if samples["logrelay_catcher_dead_letters_published_total"] == BAD_FRAMES else None

    samples = wait_until(all_counted, timeout=30, what="every refused frame dead-lettered")
    kept = stream_length(redis_server, "{logrelay}:dead")
    trimmed = samples["logrelay_catcher_dead_letters_trimmed_total"]
    assert LIMIT <= kept <= BOUND
    # Exact, not estimated: what was written and not trimmed is what the stream holds.
    assert trimmed == BAD_FRAMES - kept
    with redis_server.client() as client:
        newest = [fields for _, fields in client.xrevrange("{logrelay}:dead", count=kept)]
    # The oldest went first: the last refused frame is still there.
    assert b"bounds.oversize.49" in newest[0][b"raw"]
    assert "dead-letter stream '{logrelay}:dead' is at --dead-letter-max-length" in catcher.log


def logrelay(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m relay ARGS`` as a user runs it (no option from the environment)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOGRELAY_") or "PURE" in key}
    return subprocess.run(
        [sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_up_on_its_embedded_broker_leaves_every_dead_letter_in_a_file_beside_the_output(
    catcher_factory: Callable[..., CatcherProcess], redis_server: RedisServer, tmp_path: Path
) -> None:
    output = tmp_path / "central.log"
    up = catcher_factory("", "--output", str(output), "--format", "json", "--max-decoded-bytes", "4KiB", command="up")
    send_interleaved(up.port)
    wait_until(lambda: len(json_lines(output, writer_running=True)) == BAD_FRAMES + 1, timeout=60, what="the records")
    assert up.stop() == 0

    raw_lines = dead_letter_path(output).read_bytes().split(b"\n")
    assert raw_lines[-1] == b""  # every line whole, newline-terminated
    assert all(json.loads(line) for line in raw_lines[:-1])
    letters = list(read_letters(dead_letter_path(output)))
    sent = list(bad_frames())
    assert len(letters) == BAD_FRAMES
    # Each letter holds its frame's pickle byte for byte (the frame less its 4-byte length header), in order.
    assert [letter.field("raw") for letter in letters] == [bad[4:] for bad in sent]
    assert all(letter.reason for letter in letters)
    assert len({letter.id for letter in letters}) == BAD_FRAMES
    assert [line["msg"] for line in json_lines(output)] == [f"valid {n}" for n in range(BAD_FRAMES + 1)]

    # The file loaded into a Redis: the oversize records replay under a higher limit, the hostile ones stay.
    path = str(dead_letter_path(output))
    loaded = logrelay("dead-letters", "load", path, "--redis-url", redis_server.url)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == f"loaded {BAD_FRAMES} dead letter(s) into {{logrelay}}:dead\n"
    replayed = logrelay("dead-letters", "replay", "--all", "--redis-url", redis_server.url)
    assert replayed.stdout.splitlines()[-1] == f"replayed {BAD_FRAMES // 2}, still refused {BAD_FRAMES // 2}"
    again = logrelay("dead-letters", "load", path, "--redis-url", redis_server.url)
    assert again.stdout.startswith(f"loaded 0 dead letter(s) into {{logrelay}}:dead; {BAD_FRAMES} not added: ")
    assert stream_length(redis_server) == BAD_FRAMES // 2


def test_a_consumer_keeps_its_dead_letters_near_the_bound_and_counts_what_it_trimmed(
    redis_server: RedisServer, consumer_factory: Callable[..., ConsumerProcess], tmp_path: Path
) -> None:
    # Entries a consumer cannot render, each over a stream node's 4 KiB, between records it can.
    with redis_server.client() as client:
        for number in range(BAD_FRAMES):
            client.xadd("logrelay", {"v": "1", "record": json.dumps({"msg": f"valid {number}", "name": "t"})})
            client.xadd("logrelay", {"v": "1", "record": "{not json " + "x" * 5000})
    health = free_port()
    output = tmp_path / "central.log"
    consumer = consumer_factory(
        redis_server.url,
        output,
        *("--format", "%(message)s", "--dead-letter-max-length", str(LIMIT)),
        *("--health-listen", f"127.0.0.1:{health}", "--batch-size", "10"),  # batches: many trims
    )

    def all_dead_lettered() -> dict[str, float] | None:
        samples = scrape(health)
        return samples if samples["logrelay_consumer_dead_lettered_total"] == BAD_FRAMES else None

    samples = wait_until(all_dead_lettered, timeout=30, what="every unrenderable entry dead-lettered")
    kept = stream_length(redis_server, "{logrelay}:dead")
    assert LIMIT <= kept <= BOUND
    assert samples["logrelay_consumer_dead_letters_trimmed_total"] == BAD_FRAMES - kept
    wait_until(lambda: output.read_text().count("\n") == BAD_FRAMES, timeout=30, what="every valid line")
    assert output.read_text().splitlines() == [f"valid {number}" for number in range(BAD_FRAMES)]
    # Trimmed by many batches, said once (at most every 30 s).
    assert consumer.log.count("is at --dead-letter-max-length") == 1
