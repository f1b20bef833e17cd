"""The rotation bench at a tiny scale: both configurations drain the stream, the rotating one into segments."""

from __future__ import annotations

import pytest

from bench import rotation

pytestmark = pytest.mark.integration


def test_rotating_passes_make_segments_and_the_ratios_come_from_the_passes() -> None:
    result = rotation.run(3000, "64KiB", repeat=2)  # ~2.5 MB of lines: segments of 64 KiB and more
    off, gz = result["off"], result["gzip"]
    assert isinstance(off, dict)
    assert isinstance(gz, dict)
    # run() checked each pass's segments (decompressed) and file for each record exactly once.
    assert off["segments"] == 0
    assert gz["segments"] >= 1
    assert result["ratio"] == pytest.approx(gz["lines_per_s"] / off["lines_per_s"])
    assert len(result["passes_off"]) == len(result["passes_gzip"]) == 2  # type: ignore[arg-type]
    assert result["median_ratio"] > 0
