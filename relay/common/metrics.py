"""What ``/metrics`` serves: one Prometheus registry per process, filled by the catcher and the consumer.

The counters stay plain integers bumped on the hot path
(:mod:`relay.common.counters`); :class:`StatsCollector` reads them when
Prometheus scrapes, so a record costs nothing more than before.  The
latencies are ``prometheus_client`` histograms observed once per batch or
per sync, never per record (``Histogram.observe`` costs about 0.6 µs).

Each process builds its own :class:`~prometheus_client.CollectorRegistry`
(:func:`new_registry`), never the library's global one: tests build many
catchers and consumers in one interpreter, and ``logrelay up`` puts a catcher
and a consumer into one registry, each under its own prefix
(``logrelay_catcher_*``, ``logrelay_consumer_*``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

import prometheus_client
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from relay.common import speedups
from relay.common.counters import CatcherStats, ConsumerStats, Counters
from relay.common.group_staleness import GroupState

__all__ = [
    "CATCHER_GAUGES",
    "CatcherMetrics",
    "ConsumerMetrics",
    "GroupInfo",
    "StatsCollector",
    "new_registry",
    "render",
]

# A _created sample beside every histogram is noise for our scrapers; this is the library's only switch (global).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

#: Stale groups given a labelled sample each (the most entries held first): the label set stays bounded.
MAX_LABELLED_GROUPS: Final = 10

#: CatcherStats fields that go up and down (gauges); every other field only grows (a counter, ``_total``).
CATCHER_GAUGES: Final = frozenset({"connections", "buffered", "partial_bytes"})

# Seconds.  A batch's round trip to Redis is a millisecond or less when it is near; the tail
# buckets show a Redis that stalls (AOF rewrite, a full window) or is away.
_ROUND_TRIP_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A record buffered through an outage waits as long as the outage: up to minutes.
_RECORD_BUCKETS: Final = (*_ROUND_TRIP_BUCKETS, 30.0, 60.0, 300.0)
# A write into the page cache: microseconds, unless the kernel throttles dirty pages.
_WRITE_BUCKETS: Final = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)


def new_registry() -> CollectorRegistry:
    """A process's registry, with ``logrelay_speedup_in_use``; the catcher and the consumer add theirs."""
    registry = CollectorRegistry()
    registry.register(_SpeedupsCollector())
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text exposition format (0.0.4)."""
    return prometheus_client.generate_latest(registry)


class StatsCollector(Collector):
    """A counters dataclass as metrics, read at scrape time: ``PREFIX_field_total``, or ``PREFIX_field`` for gauges."""

    def __init__(self, prefix: str, stats: Counters, gauges: frozenset[str] = frozenset()) -> None:
        self.prefix = prefix
        self.stats = stats
        self.gauges = gauges

    def describe(self) -> Iterable[Metric]:
        # The names, for the registry's check that no two collectors serve the same one.
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        for field, value in self.stats.as_dict().items():
            name = f"{self.prefix}_{field}"
            help_text = field.replace("_", " ")
            if field in self.gauges:
                yield GaugeMetricFamily(name, help_text, value=value)
            else:
                # The family adds _total to the sample's name.
                yield CounterMetricFamily(name, help_text, value=value)


class _GaugesCollector(Collector):
    """Gauges whose values are asked for at scrape time; a None value leaves its gauge out (not known yet)."""

    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float | None]]]) -> None:
        self.gauges = gauges

    def describe(self) -> Iterable[Metric]:
        # The names only: the readers may not be able to answer yet.
        return [GaugeMetricFamily(name, help_text) for name, (help_text, _) in self.gauges.items()]

    def collect(self) -> Iterable[Metric]:
        for name, (help_text, read) in self.gauges.items():
            value = read()
            if value is not None:
                yield GaugeMetricFamily(name, help_text, value=value)


class _SpeedupsCollector(Collector):
    """``logrelay_speedup_in_use{module=...}``: 1 where the module's C extension runs, 0 where its Python does."""

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "logrelay_speedup_in_use", "1 where a C speedup runs, 0 where its Python reference does", labels=["module"]
        )
        for module, how in sorted(speedups.IN_USE.items()):
            family.add_metric([module], int(how == "c"))
        yield family


class _StaleGroupsCollector(Collector):
    """``logrelay_consumer_stale_groups`` and, for the first MAX_LABELLED_GROUPS of them,
    ``logrelay_consumer_stale_group_entries{group=...}`` (a group whose count Redis cannot tell has none)."""

    def __init__(self, read: Callable[[], list[GroupState]]) -> None:
        self.read = read

    def describe(self) -> Iterable[Metric]:
        return self._families([])

    def collect(self) -> Iterable[Metric]:
        return self._families(self.read())

    @staticmethod
    def _families(stale: list[GroupState]) -> list[Metric]:
        count = GaugeMetricFamily(
            "logrelay_consumer_stale_groups",
            "consumer groups of the stream with no consumer, or none that read within --stale-group-after",
            value=len(stale),
        )
        entries = GaugeMetricFamily(
            "logrelay_consumer_stale_group_entries",
            "entries a stale group keeps from being trimmed (not read, or not acknowledged)",
            labels=["group"],
        )
        for state in stale[:MAX_LABELLED_GROUPS]:
            if state.held is not None:
                entries.add_metric([state.name], state.held)
        return [count, entries]


class CatcherMetrics:
    """A catcher's metrics: its counters, its readiness, and the latencies of its batches.

    ``registry`` None: the histograms are kept but served nowhere (a publisher built by a test).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        stats: CatcherStats | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.publish_seconds = Histogram(
            "logrelay_catcher_publish_seconds",
            "seconds from a batch sent to Redis to its confirmation: its reply, or with --wait-replicas "
            "the WAIT that counted its replicas (per batch)",
            buckets=_ROUND_TRIP_BUCKETS,
            registry=registry,
        )
        self.record_latency_seconds = Histogram(
            "logrelay_catcher_record_latency_seconds",
            "seconds from receiving a batch's oldest record to Redis confirming the batch (per batch)",
            buckets=_RECORD_BUCKETS,
            registry=registry,
        )
        if registry is not None and stats is not None:
            registry.register(StatsCollector("logrelay_catcher", stats, CATCHER_GAUGES))
        if registry is not None and ready is not None:
            registry.register(_GaugesCollector({"logrelay_catcher_ready": ("1 when /readyz says ready", ready)}))


@dataclass(slots=True)
class GroupInfo:
    """The consumer group's figures from XINFO GROUPS (None: not read yet, or Redis could not say)."""

    #: Entries in the stream not yet delivered to the group.
    lag: int | None = None
    #: Entries delivered and not yet acknowledged.
    pending: int | None = None


class ConsumerMetrics:
    """A file consumer's metrics: its counters, readiness, its group's lag and pending, its sync latencies.

    ``registry`` None: the histograms are kept but served nowhere (a group commit built by a test).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        stats: ConsumerStats | None = None,
        ready: Callable[[], bool] | None = None,
        group: Callable[[], GroupInfo] | None = None,
        stale_groups: Callable[[], list[GroupState]] | None = None,
    ) -> None:
        self.sync_seconds = Histogram(
            "logrelay_consumer_sync_seconds",
            "seconds from a sync's start (fsync, checkpoint) to the reply to its XACK (per sync)",
            buckets=_ROUND_TRIP_BUCKETS,
            registry=registry,
        )
        self.write_seconds = Histogram(
            "logrelay_consumer_batch_write_seconds",
            "seconds to write one batch's lines into the file (per batch)",
            buckets=_WRITE_BUCKETS,
            registry=registry,
        )
        if registry is None:
            return
        if stats is not None:
            registry.register(StatsCollector("logrelay_consumer", stats))
        gauges: dict[str, tuple[str, Callable[[], float | None]]] = {}
        if ready is not None:
            gauges["logrelay_consumer_ready"] = ("1 when /readyz says ready", ready)
        if group is not None:
            gauges["logrelay_consumer_lag"] = ("entries not yet delivered to the group", lambda: group().lag)
            gauges["logrelay_consumer_pending"] = ("entries delivered, not yet acknowledged", lambda: group().pending)
        registry.register(_GaugesCollector(gauges))
        if stale_groups is not None:
            registry.register(_StaleGroupsCollector(stale_groups))
