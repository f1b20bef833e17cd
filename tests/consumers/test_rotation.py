"""When the file rotates, what segments are called, which ones retention removes: consumers.rotation, no files."""

from __future__ import annotations

import calendar
import random

import pytest

from consumers.rotation import (
    RotationPolicy,
    RotationSettings,
    Segment,
    expired,
    parse_duration,
    parse_segment,
    segment_name,
)

T0 = calendar.timegm((2026, 12, 6, 10, 59, 58, 0, 0, 0))  # 10:59:58 UTC


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("7d", 604800),
        ("2w", 1209600),
        ("1.5h", 5400),
        ("hourly", 3600),
        ("Daily", 86400),
        ("weekly", 604800),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "5x", "-1h", "0", "1 day"])
def test_bad_durations_say_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "settings",
    [{"size": 0}, {"interval": 0.5}, {"keep": -1}, {"keep_age": 0}, {"keep_bytes": -1}, {"compress": "zip"}],
)
def test_settings_refuse_what_cannot_work(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="--"):
        RotationSettings(**settings)  # type: ignore[arg-type]


def test_size_rotation_once_the_file_holds_the_size_never_an_empty_file() -> None:
    policy = RotationPolicy(RotationSettings(size=1000), started=T0)
    assert not policy.due(999, T0)
    assert policy.due(1000, T0)
    assert not policy.due(0, T0)
    assert not RotationPolicy(RotationSettings(), started=T0).due(10**12, T0)


def test_at_most_one_rotation_per_second_so_names_stay_unique() -> None:
    policy = RotationPolicy(RotationSettings(size=10), started=T0)
    assert policy.due(10, T0 + 0.1)
    policy.rotated(T0 + 0.1)
    assert not policy.due(10_000, T0 + 0.9)  # the same second: the file grows a little past the size
    assert policy.due(10_000, T0 + 1.0)


def test_a_clock_stepped_back_does_not_hold_size_rotation_up() -> None:
    policy = RotationPolicy(RotationSettings(size=10), started=T0)
    policy.rotated(T0)
    assert policy.due(10, T0 - 3600)  # NTP stepped back an hour: rotations go on


def test_interval_rotation_on_the_utc_clocks_boundaries() -> None:
    policy = RotationPolicy(RotationSettings(interval=3600), started=T0)  # content since 10:59:58
    assert not policy.due(5, T0 + 1.9)  # 10:59:59.9
    assert policy.due(5, T0 + 2)  # 11:00:00
    assert not policy.due(0, T0 + 2)  # nothing to rotate
    policy.rotated(T0 + 2)
    assert not policy.due(5, T0 + 3600)  # 11:59:58
    assert policy.due(5, T0 + 3602)  # 12:00:00


def test_daily_rotation_at_midnight_utc_and_a_reopen_starts_a_new_period() -> None:
    midnight = calendar.timegm((2026, 12, 7, 0, 0, 0, 0, 0, 0))
    policy = RotationPolicy(RotationSettings(interval=86400), started=T0)
    assert not policy.due(5, midnight - 0.001)
    assert policy.due(5, midnight)
    policy.reopened(midnight + 5)
    assert not policy.due(5, midnight + 86399)


def test_a_segments_name_is_its_utc_second_and_reads_back() -> None:
    name = segment_name("central.log", T0 + 0.7)
    assert name == "central.log.20261206T105958Z"
    assert parse_segment("central.log", name) == Segment(int(T0), 0, name, False)
    assert parse_segment("central.log", name + ".gz") == Segment(int(T0), 0, name + ".gz", True)
    assert parse_segment("central.log", segment_name("central.log", T0, 3)) == Segment(int(T0), 3, name + "-3", False)


@pytest.mark.parametrize(
    "name",
    [
        "central.log",
        "central.log.checkpoint",
        "central.log.lock",
        "central.log.1",
        "central.log.20261206T105958Z.tmp",
        "central.log.20261206T105958Z.gz.tmp",
        "central.log.20261306T105958Z",
        "other.log.20261206T105958Z",
    ],
)
def test_only_segment_names_are_segments(name: str) -> None:
    assert parse_segment("central.log", name) is None


def test_sorting_the_names_gives_write_order_compressed_or_not() -> None:
    rng = random.Random(7)
    rotations = sorted(T0 + rng.uniform(0, 10**7) for _ in range(200))
    seconds = sorted({int(t) for t in rotations})  # one rotation per second at most
    names = [segment_name("central.log", t) + rng.choice(["", ".gz"]) for t in seconds]
    shuffled = names[:]
    rng.shuffle(shuffled)
    assert sorted(shuffled) == names
    assert [s.name for s in sorted(parse_segment("central.log", n) for n in shuffled if n)] == names  # type: ignore[type-var]


def segments(*sizes: int, start: float = T0) -> list[tuple[Segment, int]]:
    return [(Segment(int(start) + 3600 * n, 0, f"s{n}", False), size) for n, size in enumerate(sizes)]


def test_retention_by_count_age_and_bytes_removes_the_oldest_first() -> None:
    found = segments(100, 200, 300, 400)  # rotated at T0, +1 h, +2 h, +3 h
    names = lambda doomed: [segment.name for segment in doomed]  # noqa: E731
    assert names(expired(found, RotationSettings(keep=2), T0)) == ["s0", "s1"]
    assert names(expired(found, RotationSettings(keep=0), T0)) == ["s0", "s1", "s2", "s3"]
    assert names(expired(found, RotationSettings(keep_age=5400), T0 + 3 * 3600)) == ["s0", "s1"]
    assert names(expired(found, RotationSettings(keep_bytes=700), T0)) == ["s0", "s1"]
    assert names(expired(found, RotationSettings(keep_bytes=1000), T0)) == []
    assert names(expired(found, RotationSettings(keep=3, keep_bytes=450), T0)) == ["s0", "s1", "s2"]
    assert names(expired(found, RotationSettings(), T0 + 10**9)) == []
