"""bench.decode at a tiny scale: both paths timed over the same frames, after checking they agree."""

from __future__ import annotations

from bench import decode
from relay.decode import fast_path


def test_decode_bench_reports_both_paths_and_the_share_of_the_fast_one() -> None:
    result = decode.run(records=200, repeat=1)
    assert result["records"] == 200
    for figure in ("python_path_us", "decode_payload_us", "feed_us", "feed_one_frame_per_call_us"):
        assert isinstance(result[figure], float)
        assert result[figure] > 0, figure  # type: ignore[operator]
    share = result["fast_path_share"]
    assert isinstance(share, float)
    if fast_path.IMPLEMENTATION == "c":
        assert share == 1.0  # the mix's classes (datetime, Decimal, set) included
    else:
        assert share == 0.0
