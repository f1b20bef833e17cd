"""bench.trim at a tiny scale: every variant empties the stream but for its newest entry, and reports figures."""

from __future__ import annotations

from bench import trim


def test_trim_bench_runs_every_variant_and_checks_what_is_left() -> None:
    results = trim.run(entries=3000, rounds=1)
    assert [r["variant"] for r in results] == list(trim.VARIANTS)
    for found in results:
        for figure in ("trim_ms", "p50_ms", "p99_ms", "max_ms"):
            value = found[figure]
            assert isinstance(value, float)
            assert value > 0, (found["variant"], figure)
