"""The --wait-replicas bench at a tiny scale: both variants run against a master with a replica, checked."""

from __future__ import annotations

import json

import pytest

from bench import replicas, suite
from bench.frames import build_frames
from bench.loadgen import send_frames
from tests.support.clients import read_stream
from tests.support.polling import wait_until

pytestmark = pytest.mark.integration


def test_the_variants_alternate_run_by_run() -> None:
    assert replicas.alternated(3) == [0, 1, 1, 0, 0, 1]


def test_a_stack_with_a_replica_serves_what_the_catcher_confirmed() -> None:
    frames = build_frames(200)
    with suite.logrelay(with_consumer=False, setup=replicas.setup(1, confirmed=True)) as stack:
        (replica,) = stack.replicas
        with stack.server.client() as master:
            assert master.info("replication")["connected_slaves"] == 1
        assert stack.buffered() == 0
        send_frames(stack.port, frames, 2, 1, timeout=60)
        with replica.client() as client:
            wait_until(lambda: stack.buffered() == 0 and client.xlen("logrelay") == 200, timeout=30, what="confirmed")
            seqs = [json.loads(fields[b"record"])["bench_seq"] for _, fields in read_stream(client)]
        suite.assert_exactly_once(seqs, 200, "replica")


def test_every_kind_runs_with_both_waits_and_reports_ratios() -> None:
    result = replicas.run(300, rounds=1, rate=500, seconds=1)
    for kind in ("ingest", "end_to_end", "latency"):
        assert [len(result[kind][f"wait_{wait}"]) for wait in replicas.WAITS] == [1, 1]
    # Each run checked each record exactly once (in the file, the master's stream and the replica's).
    assert result["ingest"]["wait_1"][0]["records"] == 300
    summary = result["summary"]
    ingest = summary["ingest_records_per_s"]
    assert ingest["ratio"] == pytest.approx(ingest["wait_1"] / ingest["wait_0"])
    assert summary["latency_p99_ms"]["wait_0"] > 0
    table = "\n".join(" ".join(row) for row in replicas.rows(result))
    assert "wait-replicas 1 / 0, ingest, confirmed" in table
    assert "p99" in table


def test_the_suite_table_shows_the_wait_replicas_ratios() -> None:
    def runs(rate: float, p50: float, p99: float) -> list[dict[str, float]]:
        return [{"records_per_s": rate, "p50_ms": p50, "p99_ms": p99}]

    result = {"rate": 20_000.0, "ingest": {}, "end_to_end": {}, "latency": {}}
    for kind in ("ingest", "end_to_end", "latency"):
        result[kind] = {"wait_0": runs(100_000, 2.0, 10.0), "wait_1": runs(80_000, 3.0, 15.0)}
    result["summary"] = replicas.summary(result)
    results = {
        "hand_rolled_publish": {"records_per_s": 10_000.0},
        "ingest": [{"connections": 64, "records_per_s": 30_000.0, "catcher_peak_rss_mib": 100.0}],
        "end_to_end": [
            {"system": s, "connections": 64, "records_per_s": 1.0} for s in ("logrelay", "naive", "cookbook")
        ],
        "socket_handler": [{"system": "naive", "records_per_s": 10.0}],
        "consumer": [],
        "latency": [{"system": "naive", "rate": 100.0, "p50_ms": 2.0, "p99_ms": 10.0}],
        "replicas": result,
    }
    table = suite.table(results)
    assert "wait-replicas 1 / 0, ingest, confirmed, 64 conn" in table
    assert "0.80x (medians of 1 runs each, alternated)" in table
    assert "p99 1.50x" in table
