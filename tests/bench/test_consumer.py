"""The consumer bench at a tiny scale: every pass drains the whole stream, and the best pass is reported."""

from __future__ import annotations

import pytest

from bench import consumer

pytestmark = pytest.mark.integration


def test_each_pass_reads_every_entry_in_a_group_of_its_own_and_the_best_is_reported() -> None:
    results = consumer.run(300, "batch", repeat=2)
    assert [r["format"] for r in results] == list(consumer.FORMATS)
    for result in results:
        # run() checked the JSON file of each pass for each record exactly once.
        assert result["records"] == 300
        passes = result["passes"]
        assert isinstance(passes, list)
        assert len(passes) == 2
        assert result["lines_per_s"] == max(passes)
        assert all(rate > 0 for rate in passes)
