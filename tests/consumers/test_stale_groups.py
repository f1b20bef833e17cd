"""StaleGroupWatch on a real Redis: the warning (name, entries held, lag, pending), once, and the metrics."""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from consumers.stale_groups import StaleGroupWatch, check_seconds
from relay.common.metrics import MAX_LABELLED_GROUPS, ConsumerMetrics, new_registry, render
from tests.support.polling import async_wait_until

STREAM = "logs"


def stale_samples(watch: StaleGroupWatch) -> dict[str, float]:
    """The stale-group samples a scrape of a consumer's registry shows: by group, and "" for the count."""
    registry = new_registry()
    ConsumerMetrics(registry, stale_groups=lambda: watch.stale)
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(render(registry).decode()):
        for sample in family.samples:
            if sample.name == "logrelay_consumer_stale_groups":
                found[""] = sample.value
            elif sample.name == "logrelay_consumer_stale_group_entries":
                found[sample.labels["group"]] = sample.value
    return found


async def test_a_stale_group_holding_entries_is_warned_about_once_by_name_and_counted(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "logrelay.consumer")
    await redis.xgroup_create(STREAM, "leftover", "$", mkstream=True)
    await redis.xgroup_create(STREAM, "file", "$")
    for n in range(7):
        await redis.xadd(STREAM, {"n": str(n)})
    await redis.xreadgroup("file", "writer", {STREAM: ">"})  # the real consumer: read, fresh
    watch = StaleGroupWatch(redis, STREAM, stale_after=3600)

    assert [state.name for state in await watch.check()] == ["leftover"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "consumer group 'leftover' of stream 'logs' looks abandoned (no consumer; --stale-group-after 3600s): "
        "it holds 7 entries (lag 7, pending 0) that trimming keeps for it; if nobody will read it: "
        "XGROUP DESTROY logs leftover"
    ]
    assert stale_samples(watch) == {"": 1.0, "leftover": 7.0}

    # Looked at again (every check_seconds): the figures follow, the warning is not repeated.
    await redis.xadd(STREAM, {"n": "7"})
    await watch.check()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert stale_samples(watch) == {"": 1.0, "leftover": 8.0}

    await redis.xgroup_destroy(STREAM, "leftover")
    assert await watch.check() == []
    assert "consumer group 'leftover' of stream 'logs' is no longer stale" in caplog.text
    assert stale_samples(watch) == {"": 0.0}


async def test_a_stale_group_that_holds_nothing_is_counted_but_not_warned_about_until_it_does(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "logrelay.consumer")
    await redis.xgroup_create(STREAM, "leftover", "$", mkstream=True)
    watch = StaleGroupWatch(redis, STREAM, stale_after=3600)
    await watch.check()
    assert (caplog.records, stale_samples(watch)) == ([], {"": 1.0, "leftover": 0.0})
    await redis.xadd(STREAM, {"n": "0"})
    await watch.check()
    assert "'leftover' of stream 'logs' looks abandoned" in caplog.text
    assert "holds 1 entries (lag 1, pending 0)" in caplog.text


async def test_only_the_groups_holding_most_get_a_labelled_sample(redis: Redis) -> None:
    groups = MAX_LABELLED_GROUPS + 3
    for n in range(groups):
        # Group g<n> is created after n entries: the earlier, the more it holds.
        await redis.xgroup_create(STREAM, f"g{n}", "$", mkstream=True)
        await redis.xadd(STREAM, {"n": str(n)})
    watch = StaleGroupWatch(redis, STREAM, stale_after=3600)
    await watch.check()
    samples = stale_samples(watch)
    assert samples.pop("") == groups
    assert samples == {f"g{n}": float(groups - n) for n in range(MAX_LABELLED_GROUPS)}


def test_groups_are_looked_at_a_tenth_of_the_threshold_apart_within_bounds() -> None:
    assert [check_seconds(after) for after in (2, 300, 3600, 86400)] == [1.0, 30.0, 60.0, 60.0]


async def test_the_group_the_consumer_reads_is_never_called_abandoned(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # The consumer restarting after a downtime (the catchers published meanwhile): its group's consumers
    # have not read for longer than the threshold, and it looks before its first read.  It is alive: no
    # warning telling the operator to XGROUP DESTROY the group it is about to read.
    caplog.set_level(logging.WARNING, "logrelay.consumer")
    await redis.xgroup_create(STREAM, "file", "$", mkstream=True)
    await redis.xgroup_create(STREAM, "leftover", "$")
    await redis.xadd(STREAM, {"n": "0"})
    await redis.xreadgroup("file", "writer", {STREAM: ">"})
    await redis.xadd(STREAM, {"n": "1"})
    stale_after = 0.2

    async def writer_idle() -> bool:
        return all(consumer["idle"] > stale_after * 1000 for consumer in await redis.xinfo_consumers(STREAM, "file"))

    await async_wait_until(writer_idle, timeout=20, what="the writer idle past the threshold")
    watch = StaleGroupWatch(redis, STREAM, stale_after=stale_after, own_group="file")

    assert [state.name for state in await watch.check()] == ["leftover"]
    assert "'leftover' of stream 'logs' looks abandoned" in caplog.text
    assert "'file'" not in caplog.text
    assert stale_samples(watch) == {"": 1.0, "leftover": 2.0}
