"""Breaking things for real: Redis killed, absent or stalled, a writer frozen, a full disk, a catcher killed.

Every test runs real processes (redis-server, ``logrelay catch``, ``logrelay
consume file``, SocketHandler clients) and checks, after the fault, that each
record is where docs/faults.md says it is: once, in each client's order, or
accounted for as a loss docs/faults.md admits.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.checkpoint import read_checkpoint
from tests.support.clients import (
    REPO_ROOT,
    finish_senders,
    read_stream,
    rss_bytes,
    sequences_by_client,
    start_senders,
)
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess, ConsumerProcess
from tests.support.realredis import RedisServer, free_port
from tests.support.streams import (
    assert_each_record_once_in_order,
    count_json_lines,
    entries_added,
    group_info,
    group_pending,
    json_lines,
    stream_length,
)

pytestmark = pytest.mark.integration

CatcherFactory = Callable[..., CatcherProcess]
ConsumerFactory = Callable[..., ConsumerProcess]
RedisFactory = Callable[..., RedisServer]

MiB = 2**20


def file_records(path: Path) -> list[tuple[str, int]]:
    """(client, seq) of every line of a JSON-lines file; a torn line fails the test."""
    return [(r["client_id"], r["seq"]) for r in json_lines(path)]


def lines_at_least(path: Path, lines: int) -> Callable[[], bool]:
    return lambda: count_json_lines(path) >= lines


def checkpoint_offset(output: Path) -> int:
    found = read_checkpoint(output.with_name(output.name + ".checkpoint"))
    return found[1].offset if found is not None else 0


# -- 1. Redis killed and restarted -------------------------------------------------------------------------------


def test_redis_kill_9_and_restart_with_aof_every_record_once_in_the_file(
    redis_server_factory: RedisFactory,
    catcher_factory: CatcherFactory,
    consumer_factory: ConsumerFactory,
    tmp_path: Path,
) -> None:
    server = redis_server_factory(appendonly=True)  # appendfsync always: an acknowledged write is on disk
    catcher = catcher_factory(server.url)
    output = tmp_path / "central.jsonl"
    consumer = consumer_factory(server.url, output, "--format", "json")
    clients, count, rate = 4, 4000, 400.0  # 10 s of logging
    senders = start_senders(catcher.port, clients, count, patient=True, rate=rate)
    try:
        for kill in range(2):
            lines_before = count_json_lines(output)
            wait_until(lines_at_least(output, lines_before + 300), timeout=30, what=f"lines before kill {kill + 1}")
            outages = (catcher.log.count("cannot publish to Redis"), consumer.log.count("Redis unavailable"))
            server.stop(signal.SIGKILL)

            def both_noticed(outages: tuple[int, int] = outages) -> bool:
                return (
                    catcher.log.count("cannot publish to Redis") > outages[0]
                    and consumer.log.count("Redis unavailable") > outages[1]
                )

            wait_until(both_noticed, timeout=20, what="catcher and consumer noticing Redis is gone")
            server.start()  # same port, same directory: the AOF brings the stream and the group back
    finally:
        if server.process is None:
            server.start()
        reports = finish_senders(senders)
    assert all(report["errors"] == 0 for report in reports)

    total = clients * count
    wait_until(
        lambda: count_json_lines(output) + group_pending(server) >= total,
        timeout=60,
        what="every record written or in the writer's hands",
    )
    assert entries_added(server) == total, "a batch doubled in the stream across the restarts"
    assert catcher.log.count("Redis is back") >= 2
    assert consumer.log.count("Redis is back") >= 2
    assert consumer.stop() == 0  # finishes and acknowledges the batch in hand
    assert catcher.stop() == 0
    assert "Traceback" not in catcher.log + consumer.log
    records = file_records(output)
    # Entries delivered by a read whose reply died with Redis must not stay pending behind the checkpoint.
    assert pending_ids(server) == []
    assert_each_record_once_in_order(records, clients, count)
    assert group_pending(server) == 0


def pending_ids(server: RedisServer, group: str = "logrelay-file") -> list[str]:
    with server.client() as client:
        rows = client.xpending_range("logrelay", group, min="-", max="+", count=100_000)
    return [row["message_id"].decode() for row in rows]


# -- 2. Redis not there yet ---------------------------------------------------------------------------------------


def test_redis_unreachable_at_start_catcher_and_consumer_wait_then_work(
    redis_server_factory: RedisFactory,
    catcher_factory: CatcherFactory,
    consumer_factory: ConsumerFactory,
    tmp_path: Path,
) -> None:
    server = redis_server_factory(started=False)
    catcher = catcher_factory(server.url)
    output = tmp_path / "central.jsonl"
    consumer = consumer_factory(server.url, output, "--format", "json")
    wait_until(lambda: "unreachable" in catcher.log, timeout=15, what="the catcher saying Redis is unreachable")
    wait_until(lambda: "Redis unavailable" in consumer.log, timeout=15, what="the consumer saying Redis is unavailable")

    clients, count = 3, 600
    reports = finish_senders(start_senders(catcher.port, clients, count, patient=True))
    assert all(report["errors"] == 0 for report in reports)
    # Everything sits in the catcher's buffer; both keep retrying, neither gave up.
    catcher.check_running()
    consumer.check_running()
    assert not output.exists() or output.stat().st_size == 0

    server.start()
    wait_until(lambda: count_json_lines(output) >= clients * count, timeout=60, what="every line once Redis is up")
    assert_each_record_once_in_order(file_records(output), clients, count)
    log = consumer.log
    assert log.count("Redis unavailable") == 1, "the outage is said once, not once per retry"
    assert log.index("Redis unavailable") < log.index("Redis is back")
    assert consumer.stop() == 0
    assert catcher.stop() == 0
    assert group_pending(server) == 0
    assert "Traceback" not in catcher.log
    assert "Traceback" not in consumer.log


def test_sigterm_while_redis_is_unreachable_stops_the_consumer(
    redis_server_factory: RedisFactory, consumer_factory: ConsumerFactory, tmp_path: Path
) -> None:
    server = redis_server_factory(started=False)
    consumer = consumer_factory(server.url, tmp_path / "central.jsonl", "--format", "json")
    wait_until(lambda: "Redis unavailable" in consumer.log, timeout=15, what="the consumer saying Redis is unavailable")
    consumer.signal(signal.SIGTERM)
    try:
        code = consumer.wait(timeout=5)  # nothing in hand: a stop takes one --block-ms (200 ms) normally
    except subprocess.TimeoutExpired:
        pytest.fail(f"the consumer ignored SIGTERM for 5 s while Redis was unreachable:\n{consumer.log}")
    assert code == 0
    assert "Traceback" not in consumer.log


# -- 3. A frozen writer and its standby -----------------------------------------------------------------------------


def start_named_senders(
    port: int, names: list[str], count: int, *, rate: float = 0, patient: bool = True
) -> list[subprocess.Popen[bytes]]:
    """Like :func:`start_senders`, with client names of our choosing (two waves must not share names)."""
    args = [sys.executable, "-m", "tests.support.sender", "--port", str(port), "--count", str(count)]
    args += ["--rate", str(rate)] + (["--patient"] if patient else [])
    return [subprocess.Popen([*args, "--client", name], cwd=REPO_ROOT, stdout=subprocess.PIPE) for name in names]


def assert_each_named_record_once_in_order(records: list[tuple[str, int]], names: list[str], count: int) -> None:
    per_client: dict[str, list[int]] = defaultdict(list)
    for client, seq in records:
        per_client[client].append(seq)
    assert sorted(per_client) == sorted(names)
    for client, seqs in per_client.items():
        missing = sorted(set(range(count)) - set(seqs))
        assert seqs == list(range(count)), (
            f"{client}: {len(seqs)} lines, missing {missing[:10]}, or doubled or out of order"
        )


def probe_record(seq: int) -> logging.LogRecord:
    record = logging.LogRecord("faults.probe", logging.INFO, __file__, 1, "probe %d", (seq,), None)
    record.__dict__.update(client_id="probe", seq=seq)
    return record


def pending_of(server: RedisServer, consumer: str, group: str = "logrelay-file") -> int:
    """Entries delivered to ``consumer`` and not acknowledged."""
    with server.client() as client:
        for info in client.xinfo_consumers("logrelay", group):
            if info["name"] == consumer.encode():
                return int(info["pending"])
    return 0


def test_a_stopped_writer_keeps_the_file_its_standby_waits_nothing_doubled_or_lost(
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

    # First wave: written, then the writer idles in a blocking read (where it spends its time at modest load).
    first, second, count = ["w1c0", "w1c1"], ["w2c0", "w2c1", "w2c2"], 1500
    reports = finish_senders(start_named_senders(catcher.port, first, count))
    wait_until(lambda: count_json_lines(output) >= len(first) * count, timeout=30, what="the first wave written")

    # The stop lands while the writer waits on XREADGROUP, and a record arrives for Redis to answer it with:
    # one record from a SocketHandler in this process, sent right after the SIGSTOP.  If the blocking read
    # happened to end empty just before (a window of a few ms in 200), let the writer go and try again.
    probe = logging.handlers.SocketHandler("127.0.0.1", catcher.port)
    probes = 0
    try:
        for _ in range(5):
            active.signal(signal.SIGSTOP)
            probe.emit(probe_record(probes))
            probes += 1
            try:
                wait_until(lambda: pending_of(redis_server, "a") > 0, timeout=2, what="a reply waiting for 'a'")
                break
            except AssertionError:
                active.signal(signal.SIGCONT)
                written = len(first) * count + probes
                wait_until(lines_at_least(output, written), timeout=10, what="the probe written")
        else:
            pytest.fail("never caught the writer inside a blocking read")
    finally:
        probe.close()
    stopped_at = time.monotonic()
    # Second wave while the writer is stopped, longer than its Redis reply timeout (5 s + block time).
    senders = start_named_senders(catcher.port, second, count, rate=300)
    try:
        try:
            frozen_lines = count_json_lines(output)
            while time.monotonic() < stopped_at + 7.0:  # the stall schedule, checked all along
                assert "took over" not in standby.log, "the standby took the file from a live writer"
                assert count_json_lines(output) == frozen_lines, "someone wrote while the writer was stopped"
                standby.check_running()
                time.sleep(0.2)
        finally:
            active.signal(signal.SIGCONT)
    finally:
        reports += finish_senders(senders)
    assert all(report["errors"] == 0 for report in reports)

    total = (len(first) + len(second)) * count + probes
    wait_until(lambda: entries_added(redis_server) >= total, timeout=30, what="every record in the stream")
    assert entries_added(redis_server) == total
    wait_until(
        lambda: (group_info(redis_server)["entries-read"] or 0) >= total,
        timeout=60,
        what="the resumed writer reading everything",
    )
    assert "took over" not in standby.log
    # The writer stops cleanly; the standby takes the file and whatever is still pending in the group.
    assert active.stop() == 0
    wait_until(lambda: "took over" in standby.log, timeout=20, what="the standby taking over after a clean stop")
    wait_until(lambda: group_pending(redis_server) == 0, timeout=30, what="nothing left pending")
    assert standby.stop() == 0
    records = file_records(output)
    assert [seq for client, seq in records if client == "probe"] == list(range(probes))
    assert_each_named_record_once_in_order([r for r in records if r[0] != "probe"], first + second, count)


# -- 4. Disk full -----------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test; lazily unmounted at the end."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True
        )
    except FileNotFoundError:
        pytest.skip("no mount command to make a small disk with")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


DISK_CLIENTS, DISK_COUNT, DISK_PAD = 4, 1000, 600  # ~4 MB of lines for a 2 MiB disk


def fill_the_disk(
    redis_server: RedisServer, catcher: CatcherProcess, consumer_factory: ConsumerFactory, disk: Path
) -> ConsumerProcess:
    """A consumer writing on ``disk``, fed more records than fit; returns once it says it cannot write."""
    output = disk / "central.jsonl"
    consumer = consumer_factory(redis_server.url, output, "--format", "json", "--batch-size", "200")
    senders = start_senders(catcher.port, DISK_CLIENTS, DISK_COUNT, patient=True, pad=DISK_PAD)
    reports = finish_senders(senders)
    assert all(report["errors"] == 0 for report in reports)
    total = DISK_CLIENTS * DISK_COUNT
    wait_until(lambda: entries_added(redis_server) >= total, timeout=30, what="every record in the stream")
    wait_until(lambda: "cannot write" in consumer.log, timeout=30, what="the consumer hitting the full disk")
    consumer.check_running()
    return consumer


def test_disk_full_nothing_acknowledged_beyond_the_file_then_every_record_once(
    redis_server: RedisServer,
    catcher_factory: CatcherFactory,
    consumer_factory: ConsumerFactory,
    small_disk: Path,
) -> None:
    catcher = catcher_factory(redis_server.url)
    consumer = fill_the_disk(redis_server, catcher, consumer_factory, small_disk)
    output, total = consumer.output, DISK_CLIENTS * DISK_COUNT

    def acknowledged_and_checkpointed() -> tuple[dict[str, Any], list[tuple[str, int]], int]:
        # Redis first: an XACK only ever follows the checkpoint that covers it, so in this order a
        # sync landing between the two reads cannot look like an acknowledgement beyond the file.
        info = group_info(redis_server)
        offset = checkpoint_offset(output)
        data = output.read_bytes()
        assert len(data) >= offset
        written = json_lines_of(data[:offset])
        acknowledged = int(info["entries-read"]) - int(info["pending"])
        assert acknowledged <= len(written), "entries acknowledged that are not in the file"
        return info, written, acknowledged

    def settled() -> bool:
        _, written, acknowledged = acknowledged_and_checkpointed()
        return acknowledged == len(written)

    try:
        # The batches written before the disk filled are synced and acknowledged (syncs are paced: one
        # may still be due); after that nothing moves.
        wait_until(settled, timeout=10, what="the batches written before the disk filled, acknowledged")
        # While the disk stays full (several retries): what the checkpoint covers is whole lines, only that is
        # acknowledged, the rest stays pending, and the failure is not logged again.
        full_until = time.monotonic() + 3.5
        observed = 0
        while time.monotonic() < full_until:  # the outage schedule, checked all along
            consumer.check_running()
            info, written, acknowledged = acknowledged_and_checkpointed()
            assert acknowledged == len(written), "entries written and checkpointed but not acknowledged"
            assert int(info["pending"]) > 0
            assert len(written) < total
            assert_prefix_of_each_client(written)
            assert consumer.log.count("cannot write") == 1
            assert "again after" not in consumer.log
            observed += 1
            time.sleep(0.25)
        assert observed >= 5

        # The operator makes room.
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        wait_until(lambda: count_json_lines(output) >= total, timeout=60, what="every line once there is room")
        assert_each_record_once_in_order(file_records(output), DISK_CLIENTS, DISK_COUNT)
        log = consumer.log
        assert log.count("cannot write") == 1, "the failure is said once, not once per retry"
        assert f"writing {output} again" in log
        assert consumer.stop() == 0
        assert group_pending(redis_server) == 0
        assert catcher.stop() == 0
    finally:
        consumer.kill()  # before the lazy unmount: nothing keeps writing into a detached disk


def test_while_the_disk_is_full_the_file_holds_only_whole_checkpointed_lines(
    redis_server: RedisServer,
    catcher_factory: CatcherFactory,
    consumer_factory: ConsumerFactory,
    small_disk: Path,
) -> None:
    catcher = catcher_factory(redis_server.url)
    consumer = fill_the_disk(redis_server, catcher, consumer_factory, small_disk)
    output = consumer.output
    try:
        # Syncs are paced: the batches written before the disk filled may still be due for theirs.
        wait_until(
            lambda: output.stat().st_size == checkpoint_offset(output),
            timeout=10,
            what="the batches written before the disk filled, checkpointed",
        )
        full_until = time.monotonic() + 2.5  # a few retries
        while time.monotonic() < full_until:
            # A reader (tail -f, a log shipper) must never see a torn line, nor lines that will be cut and rewritten.
            data = output.read_bytes()
            assert len(data) == checkpoint_offset(output), (
                f"{len(data) - checkpoint_offset(output)} bytes beyond the checkpoint, ending {data[-40:]!r}"
            )
            json_lines(output)
            time.sleep(0.25)
    finally:
        consumer.kill()


def test_sigterm_while_the_disk_is_full_stops_the_consumer_without_acknowledging(
    redis_server: RedisServer,
    catcher_factory: CatcherFactory,
    consumer_factory: ConsumerFactory,
    small_disk: Path,
) -> None:
    catcher = catcher_factory(redis_server.url)
    consumer = fill_the_disk(redis_server, catcher, consumer_factory, small_disk)
    try:
        consumer.signal(signal.SIGTERM)
        try:
            code = consumer.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the consumer ignored SIGTERM for 5 s while the disk was full:\n{consumer.log}")
        # It could not finish the batch in hand: that batch stays pending for the next start, unacknowledged.
        assert code in (0, 1)
        written = json_lines_of(consumer.output.read_bytes()[: checkpoint_offset(consumer.output)])
        info = group_info(redis_server)
        assert int(info["entries-read"]) - int(info["pending"]) == len(written)
    finally:
        consumer.kill()


def json_lines_of(data: bytes) -> list[tuple[str, int]]:
    assert not data or data.endswith(b"\n"), "the checkpointed part ends inside a line"
    return [(r["client_id"], r["seq"]) for r in (json.loads(line) for line in data.splitlines())]


def assert_prefix_of_each_client(records: list[tuple[str, int]]) -> None:
    """Each client's records so far: 0, 1, 2, ... with nothing missing or doubled."""
    per_client: dict[str, list[int]] = defaultdict(list)
    for client, seq in records:
        per_client[client].append(seq)
    for client, seqs in per_client.items():
        assert seqs == list(range(len(seqs))), f"{client}: records missing, doubled or out of order"


# -- 5. Catcher killed -------------------------------------------------------------------------------------------


def scrape_metrics(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    return {
        # prometheus_client writes every value as a float: 7.0
        name.removeprefix("logrelay_catcher_").removesuffix("_total"): int(float(value))
        for name, value in (line.split() for line in text.splitlines() if line and not line.startswith("#"))
    }


def test_catcher_kill_9_under_load_loses_only_what_it_held_and_doubles_nothing(
    redis_server: RedisServer,
    catcher_factory: CatcherFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    buffer_bytes = 256 * 1024
    health_port = free_port()
    args: tuple[str, ...] = ("--buffer-bytes", str(buffer_bytes), "--max-decoded-bytes", "64KiB")
    args += ("--catcher-id", "first")
    args += ("--health-listen", f"127.0.0.1:{health_port}")
    first = catcher_factory(redis_server.url, *args)
    clients, count, rate = 4, 4000, 400.0  # stock handlers, 10 s of logging
    senders = start_senders(first.port, clients, count, rate=rate)
    try:

        def every_client_flowing() -> bool:
            if stream_length(redis_server) < clients * 400:  # cheap until there is something to look at
                return False
            with redis_server.client() as client:
                seqs = sequences_by_client(read_stream(client))
            return len(seqs) == clients and min(len(s) for s in seqs.values()) > 400

        wait_until(every_client_flowing, timeout=30, what="records from every client")
        before_kill = scrape_metrics(health_port)
        scraped_at = time.monotonic()
        first.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        first.wait(10)
        second = catcher_factory(redis_server.url, "--catcher-id", "second", port=first.port)
    finally:
        reports = finish_senders(senders)
    assert second.port == first.port

    errors = {report["client"]: int(report["errors"]) for report in reports}
    with redis_server.client() as client:
        entries = read_stream(client)
    by_catcher: dict[str, dict[str, list[int]]] = {"first": defaultdict(list), "second": defaultdict(list)}
    for client_id, seqs in sequences_by_client(entries).items():
        assert seqs == sorted(set(seqs)), f"{client_id}: a record doubled or out of order in the stream"
    for _, fields in entries:
        record = json.loads(fields[b"record"])
        by_catcher[fields[b"catcher"].decode()][record["client_id"]].append(record["seq"])

    lost_by_catcher = 0
    lost_by_clients = 0
    for n in range(clients):
        client_id = f"c{n}"
        old, new = by_catcher["first"][client_id], by_catcher["second"][client_id]
        # What the first catcher published of a client is an unbroken prefix (its buffer is FIFO)...
        assert old == list(range(len(old))), f"{client_id}: hole in what the killed catcher published"
        # ...and every client found the new catcher and went on.
        assert new, f"{client_id}: never reached the new catcher"
        missing = count - len(old) - len(new)
        assert missing >= errors[client_id]
        lost_by_clients += errors[client_id]
        # Records the handler believed sent and that are nowhere: the kill's share.
        lost_by_catcher += missing - errors[client_id]
    held = before_kill["records_received"] - before_kill["records_published"]
    # What it had read and not published at the last scrape, plus what arrived until the kill and one
    # second of socket buffers and scheduling slack per client (records of this size: ~0.6 KB, so
    # a 256 KiB buffer alone could hold ~400).
    bound = held + int(clients * rate * (killed_at - scraped_at + 1.0))
    with capsys.disabled():
        print(
            f"\ncatcher kill -9 under load: {clients * count} emitted by stock SocketHandlers, {len(entries)} in "
            f"the stream, none doubled; lost by the killed catcher: {lost_by_catcher} (read but unpublished at the "
            f"last scrape {(killed_at - scraped_at) * 1000:.0f} ms before the kill: {held}; the rest sat in its "
            f"socket buffers or went into the dead connection; bound {bound}); dropped by the clients themselves "
            f"while reconnecting (counted by them): {lost_by_clients}"
        )
    assert 0 <= lost_by_catcher <= bound
    assert len(entries) == clients * count - lost_by_catcher - lost_by_clients
    assert second.stop() == 0


# -- 6. Redis stalled past the buffer -------------------------------------------------------------------------------


def test_redis_stalled_long_past_a_full_buffer_memory_stays_bounded_then_every_record_once(
    redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    catcher = catcher_factory(
        redis_server.url, "--buffer-bytes", "256KiB", "--max-decoded-bytes", "64KiB", "--batch-max-records", "50"
    )
    clients, count, pad = 4, 4000, 4096  # ~70 MB in all against a 256 KiB buffer
    rss_limit = 100 * MiB
    redis_server.pause()
    peak = 0
    senders = start_senders(catcher.port, clients, count, patient=True, pad=pad)
    try:
        try:
            wait_until(lambda: "buffer full" in catcher.log, timeout=30, what="the buffer filling")
            # Stall for several seconds beyond the buffer's exhaustion, watching the catcher all along.
            stall_end = time.monotonic() + 6.0
            polls = 0
            while time.monotonic() < stall_end:
                rss = rss_bytes(catcher.pid)
                peak = max(peak, rss)
                assert rss < rss_limit, f"catcher RSS {rss / MiB:.0f} MiB while Redis is stalled"
                assert any(proc.poll() is None for proc in senders), "every sender finished while Redis was stalled"
                catcher.check_running()
                polls += 1
                time.sleep(0.5)
            assert polls >= 6
        finally:
            redis_server.resume()
    finally:
        reports = finish_senders(senders)
    assert all(report["errors"] == 0 for report in reports)
    wait_until(lambda: stream_length(redis_server) >= clients * count, timeout=60, what="every record after the stall")
    with redis_server.client() as client:
        seqs = sequences_by_client(read_stream(client))
    assert sorted(seqs) == [f"c{n}" for n in range(clients)]
    for client_id, values in seqs.items():
        assert values == list(range(count)), f"{client_id}: records missing, doubled or out of order"
    assert catcher.stop() == 0
    assert "Redis is back" in catcher.log
    print(f"peak catcher RSS during the stall: {peak / MiB:.0f} MiB")
