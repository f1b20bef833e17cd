"""A live catcher under attack: the amplifier corpus and held partial frames, an honest client beside.

The decoder-level checks of each case are in tests/relay/decode/test_amplifiers.py;
here the same frames go through a real catcher process while a stock
SocketHandler logs beside them, and what the honest client relies on is
checked: every one of its records arrives once, in order; every hostile
frame gets its dead letter (or, inert, its record); the catcher stays up
and its memory bounded.  CPU per frame is measured by ``python -m
bench.attack`` (it prints, it does not assert).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
from collections.abc import Callable

import pytest

from tests.support.amplifiers import AMPLIFIERS, frame
from tests.support.clients import finish_senders, read_stream, rss_bytes, start_senders
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess
from tests.support.realredis import RedisServer

pytestmark = pytest.mark.integration

CatcherFactory = Callable[..., CatcherProcess]
MIB = 1024 * 1024
DEAD = "{logrelay}:dead"


def honest_seqs(server: RedisServer) -> list[int]:
    with server.client() as client:
        records = [json.loads(fields[b"record"]) for _, fields in read_stream(client)]
    return [record["seq"] for record in records if record.get("client_id") == "c0"]


def test_the_corpus_beside_an_honest_client_every_honest_record_once_and_a_verdict_per_frame(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    catcher = catcher_factory(redis_server.url)
    honest_count = 1500
    senders = start_senders(catcher.port, clients=1, count=honest_count, rate=300)
    refused = [case for case in AMPLIFIERS if case.refused is not None]
    delivered = len(AMPLIFIERS) - len(refused)
    with socket.create_connection(("127.0.0.1", catcher.port)) as attacker:
        for case in AMPLIFIERS:
            attacker.sendall(frame(case.build()))
        [report] = finish_senders(senders)
        assert report["errors"] == 0

        def done() -> bool:
            with redis_server.client() as client:
                return int(client.xlen(DEAD)) >= len(refused) and int(client.xlen("logrelay")) >= (
                    honest_count + delivered
                )

        wait_until(done, timeout=60, what="every honest record and a verdict for every hostile frame")
    assert honest_seqs(redis_server) == list(range(honest_count))
    with redis_server.client() as client:
        reasons = [fields[b"reason"].decode() for _, fields in client.xrange(DEAD)]
        assert int(client.xlen("logrelay")) == honest_count + delivered
    assert len(reasons) == len(refused)
    for case, reason in zip(refused, reasons, strict=True):
        assert case.refused is not None
        assert re.search(case.refused, reason), f"{case.name}: {reason}"
    catcher.check_running()
    assert rss_bytes(catcher.pid) < 256 * MIB


def test_held_partial_frames_stay_within_the_budget_and_their_memory_goes_back_when_they_close(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    catcher = catcher_factory(redis_server.url, "--max-partial-bytes", "16MiB", "--max-connections", "500")
    baseline = rss_bytes(catcher.pid)
    size = MIB - 64
    data = size.to_bytes(4, "big") + b"x" * (size - 100)  # each frame 100 bytes short of complete
    holders = []
    try:
        for _ in range(150):
            sock = socket.create_connection(("127.0.0.1", catcher.port))
            sock.setblocking(False)
            holders.append([sock, memoryview(data)])

        def sent_what_it_will() -> bool:
            # Each connection sends until the catcher and the kernel take no more.
            moved = False
            for entry in holders:
                with contextlib.suppress(BlockingIOError):
                    count = entry[0].send(entry[1])
                    entry[1] = entry[1][count:]
                    moved = moved or count > 0
            return not moved

        wait_until(lambda: all(sent_what_it_will() for _ in range(20)), timeout=60, what="the senders to stall")
        holding = rss_bytes(catcher.pid)
        # 150 MiB of incomplete frames arrived: the catcher holds what the budget allows.
        assert holding - baseline < 64 * MIB, f"{(holding - baseline) / MIB:.0f} MiB held"

        # Small records of an honest client pass meanwhile (the budget keeps room for small frames).
        senders = start_senders(catcher.port, clients=1, count=200)
        finish_senders(senders)
        wait_until(lambda: len(honest_seqs(redis_server)) >= 200, timeout=30, what="honest records")
        assert honest_seqs(redis_server) == list(range(200))
    finally:
        for sock, _ in holders:
            sock.close()
    wait_until(lambda: rss_bytes(catcher.pid) - baseline < 16 * MIB, timeout=30, what="the memory given back")
    catcher.check_running()
    assert catcher.stop() == 0
    stats = catcher.final_stats()
    assert stats["partial_frames_dropped"] == 150
    assert stats["partial_bytes"] == 0
    assert stats["partial_frame_waits"] > 0
