"""/metrics' content: the counters as Prometheus families, the readiness, the speedups, the histograms."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from relay.common import speedups
from relay.common.counters import CatcherStats, ConsumerStats
from relay.common.metrics import CATCHER_GAUGES, CatcherMetrics, ConsumerMetrics, GroupInfo, new_registry, render


def families(
    registry: CollectorRegistry,
) -> dict[str, tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]]:
    """name -> (type, {(sample name, labels): value}), parsed from the text /metrics serves."""
    return {
        family.name: (
            family.type,
            {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples},
        )
        for family in text_string_to_metric_families(render(registry).decode())
    }


def test_every_catcher_counter_is_served_under_its_name_of_today() -> None:
    registry = new_registry()
    stats = CatcherStats(**{name: n + 1 for n, name in enumerate(CatcherStats().as_dict())})
    CatcherMetrics(registry, stats, lambda: True)
    served = families(registry)
    for name, value in stats.as_dict().items():
        kind = "gauge" if name in CATCHER_GAUGES else "counter"
        sample = f"logrelay_catcher_{name}" + ("" if kind == "gauge" else "_total")
        assert served[f"logrelay_catcher_{name}"] == (kind, {(sample, ()): value})
    assert served["logrelay_catcher_ready"] == ("gauge", {("logrelay_catcher_ready", ()): 1})
    # A batch's latencies are histograms, empty until a batch is confirmed.
    for histogram in ("logrelay_catcher_publish_seconds", "logrelay_catcher_record_latency_seconds"):
        kind, samples = served[histogram]
        assert kind == "histogram"
        assert samples[(f"{histogram}_count", ())] == 0
    # No _created samples beside them (prometheus_client's default, switched off).
    assert not any(name.endswith("_created") for _, samples in served.values() for name, _ in samples)


def test_metrics_say_which_speedups_run() -> None:
    # The decoder and the packer are loaded wherever the catcher runs.
    import relay.decode.fast_path
    import relay.publish.packing  # noqa: F401

    kind, samples = families(new_registry())["logrelay_speedup_in_use"]
    assert kind == "gauge"
    reported = {dict(labels)["module"]: value for (_, labels), value in samples.items()}
    assert reported == {name: 1 if how == "c" else 0 for name, how in speedups.IN_USE.items()}
    assert {"relay.decode._fast_path", "relay.publish._packing"} <= set(reported)


def test_the_consumer_serves_its_counters_gauges_and_histograms() -> None:
    registry = new_registry()
    info = GroupInfo()
    metrics = ConsumerMetrics(registry, ConsumerStats(lines_written=5, bytes_written=60), lambda: False, lambda: info)
    metrics.sync_seconds.observe(0.004)
    served = families(registry)
    assert served["logrelay_consumer_lines_written"] == ("counter", {("logrelay_consumer_lines_written_total", ()): 5})
    assert served["logrelay_consumer_bytes_written"][1] == {("logrelay_consumer_bytes_written_total", ()): 60}
    assert served["logrelay_consumer_ready"][1] == {("logrelay_consumer_ready", ()): 0}
    sync = served["logrelay_consumer_sync_seconds"][1]
    assert sync[("logrelay_consumer_sync_seconds_count", ())] == 1
    assert sync[("logrelay_consumer_sync_seconds_bucket", (("le", "0.005"),))] == 1
    assert sync[("logrelay_consumer_sync_seconds_bucket", (("le", "0.0025"),))] == 0
    # Lag and pending not read yet: left out, not a made-up 0.
    assert "logrelay_consumer_lag" not in served
    info.lag, info.pending = 3, 2
    served = families(registry)
    assert served["logrelay_consumer_lag"][1] == {("logrelay_consumer_lag", ()): 3}
    assert served["logrelay_consumer_pending"][1] == {("logrelay_consumer_pending", ()): 2}


def test_a_catcher_and_a_consumer_share_a_registry_and_no_name() -> None:
    registry = new_registry()
    CatcherMetrics(registry, CatcherStats(), lambda: True)
    ConsumerMetrics(registry, ConsumerStats(), lambda: True, GroupInfo)
    served = families(registry)
    assert {"logrelay_catcher_ready", "logrelay_consumer_ready", "logrelay_speedup_in_use"} <= set(served)
    # A second catcher in the same registry is a mistake the registry catches.
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        CatcherMetrics(registry, CatcherStats(), lambda: True)
