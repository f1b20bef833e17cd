"""The syslog bench at a tiny scale: rsyslog, logrelay's syslog and SocketHandler paths, checked and tabled."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from bench import syslog
from relay.decode.syslog_message import syslog_record

pytestmark = pytest.mark.integration

needs_rsyslogd = pytest.mark.skipif(
    syslog.rsyslogd_binary() is None, reason="rsyslogd is not installed (.ci/run installs it: apt-get install rsyslog)"
)


def test_the_variants_alternate_round_by_round() -> None:
    first, second = syslog.alternated(2)[:3], syslog.alternated(2)[3:]
    assert first == list(syslog.VARIANTS)
    assert second == first[::-1]


def test_each_message_is_rfc5424_and_names_its_sender_and_sequence_number() -> None:
    lines = syslog.syslog_messages(3, 5, 64).split(b"\n")
    assert lines[-1] == b""  # every message LF-terminated
    for seq, line in enumerate(lines[:-1]):
        record = orjson.loads(syslog_record(line, 0.0))
        assert record["syslog"]["rfc"] == 5424
        assert len(record["msg"]) == 64
        assert syslog.parse_msg(record["msg"]) == (3, seq)


def test_the_socket_frames_carry_the_same_messages() -> None:
    frames = syslog.socket_frames(2, 3, 64)
    assert len(frames) == 6
    assert b"s1 q00000002 " in frames[5]


def lines_file(tmp_path: Path, pairs: list[tuple[int, int]]) -> Path:
    path = tmp_path / "out.log"
    path.write_text("".join(json.dumps({"msg": syslog.msg_text(s, q, 32).decode()}) + "\n" for s, q in pairs))
    return path


def test_the_check_refuses_a_missing_a_doubled_or_a_reordered_message(tmp_path: Path) -> None:
    syslog.check_syslog_lines(lines_file(tmp_path, [(0, 0), (1, 0), (0, 1), (1, 1)]), 2, 2)
    with pytest.raises(AssertionError, match=r"missing \(1\) or doubled \(0\)"):
        syslog.check_syslog_lines(lines_file(tmp_path, [(0, 0), (1, 0), (1, 1)]), 2, 2)
    with pytest.raises(AssertionError, match=r"missing \(0\) or doubled \(1\)"):
        syslog.check_syslog_lines(lines_file(tmp_path, [(0, 0), (0, 0), (0, 1), (1, 0), (1, 1)]), 2, 2)
    with pytest.raises(AssertionError, match="out of order"):
        syslog.check_syslog_lines(lines_file(tmp_path, [(0, 1), (0, 0), (1, 0), (1, 1)]), 2, 2)


@needs_rsyslogd
def test_rsyslog_writes_every_line_into_its_own_temp_dir() -> None:
    found = syslog.run_rsyslog(2, 300, 64)
    assert found["records"] == 600  # run_rsyslog counted exactly 600 lines
    assert found["lines_per_s"] > 0


@needs_rsyslogd
def test_every_variant_runs_checked_and_the_table_has_the_ratios() -> None:
    result = syslog.run(2, 500, 64, rounds=1)
    for variant in syslog.VARIANTS:
        (only,) = result["runs"][variant]
        # The logrelay runs parsed every line: each message exactly once, in each sender's order.
        assert only["records"] == 1000, variant
        assert only["lines_per_s"] > 0, variant
    summary = result["summary"]
    rates = summary["lines_per_s"]
    assert summary["syslog_vs_rsyslog"] == pytest.approx(rates["logrelay syslog"] / rates["rsyslog"])
    assert summary["syslog_vs_socket"] == pytest.approx(rates["logrelay syslog"] / rates["logrelay socket"])
    assert set(summary["cpu_us_per_record"]["logrelay syslog"]) == {"catcher", "redis", "consumer"}
    assert result["decode"]["syslog_feed_us"] > 0
    table = syslog.table(result)
    for row in (
        "rsyslog imtcp -> omfile",
        "logrelay --listen-syslog -> Redis -> file",
        "logrelay SocketHandler -> Redis -> file",
        "logrelay syslog / rsyslog",
        "logrelay syslog / logrelay socket",
        "SyslogStreamDecoder.feed",
        "FrameDecoder.feed",
    ):
        assert row in table, row
