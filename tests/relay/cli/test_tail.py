"""``logrelay tail`` as a command (click's runner, in process) against a real redis-server; its printer."""

from __future__ import annotations

import io
import json
import logging

import pytest
from click.testing import CliRunner, Result

from consumers.formatting import LineFormatter
from consumers.tail_view import TailLine, Unrenderable
from relay.cli import main
from relay.cli.tail import OutputClosed, TailPrinter, level_style
from tests.support.entries import entry_for
from tests.support.realredis import RedisServer, free_port

LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
NAMES = ("app.web", "app.db", "app.db.pool", "app.dbx", "worker")


def populate(server: RedisServer, count: int, key: str = "logrelay") -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XADD ``count`` entries in the catcher's layout: record N has level LEVELS[N % 5], logger NAMES[N % 5]
    (so level and logger go together: 0 and 5 are DEBUG app.web, 3 and 8 ERROR app.dbx), message "record N ...".
    """
    added = []
    with server.client() as client:
        for seq in range(count):
            level, name = LEVELS[seq % 5], NAMES[seq % 5]
            message = "record %d %s" + (" timeout" if seq % 10 == 4 else "")
            record = logging.LogRecord(name, level, "/srv/app.py", 7, message, (seq, name), None)
            fields = entry_for(record)
            entry_id = client.xadd(key, fields)  # type: ignore[arg-type]
            added.append((entry_id, fields))
    return added


def tail(server: RedisServer | None, *args: str) -> Result:
    url = ["--redis-url", server.url] if server else []
    return CliRunner().invoke(main, ["tail", *url, *args])


def seqs(result: Result) -> list[int]:
    """The record numbers of the printed lines, in order."""
    assert result.exit_code == 0, result.output
    return [int(line.split("] record ")[1].split()[0]) for line in result.stdout.splitlines()]


def test_the_newest_ten_by_default_oldest_first_as_the_file_consumer_writes_them(redis_server: RedisServer) -> None:
    added = populate(redis_server, 25)
    result = tail(redis_server)
    assert result.exit_code == 0, result.output
    formatter = LineFormatter()
    assert result.stdout_bytes == b"".join(formatter.format(entry_id, fields) for entry_id, fields in added[-10:])
    assert result.stderr == ""


def test_n_picks_how_many(redis_server: RedisServer) -> None:
    populate(redis_server, 25)
    assert seqs(tail(redis_server, "-n", "3")) == [22, 23, 24]
    assert seqs(tail(redis_server, "-n", "100")) == list(range(25))
    assert seqs(tail(redis_server, "-n", "0")) == []


def test_filters_select_and_n_counts_matches(redis_server: RedisServer) -> None:
    populate(redis_server, 40)
    assert seqs(tail(redis_server, "--level", "error", "-n", "4")) == [33, 34, 38, 39]
    assert seqs(tail(redis_server, "--level", "40", "-n", "4")) == [33, 34, 38, 39]
    assert seqs(tail(redis_server, "--logger", "app.db", "-n", "6")) == [26, 27, 31, 32, 36, 37]  # not app.dbx
    assert seqs(tail(redis_server, "--logger", "app.dbx", "--logger", "worker", "-n", "3")) == [34, 38, 39]
    assert seqs(tail(redis_server, "--grep", "time?out$", "-n", "100")) == [4, 14, 24, 34]
    assert seqs(tail(redis_server, "--grep", r"record 1\d ", "--level", "warning")) == [12, 13, 14, 17, 18, 19]


def test_format_json_prints_the_file_consumers_json_lines(redis_server: RedisServer) -> None:
    added = populate(redis_server, 5)
    result = tail(redis_server, "--format", "json", "-n", "2")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["msg"] for line in lines] == ["record 3 app.dbx", "record 4 worker timeout"]
    assert [line["logrelay"]["entry_id"] for line in lines] == [entry_id.decode() for entry_id, _ in added[-2:]]
    assert lines[1]["levelname"] == "CRITICAL"
    assert lines[1]["logrelay"]["client"] == "10.1.2.3:4000"


def test_a_logging_format_of_the_users(redis_server: RedisServer) -> None:
    populate(redis_server, 3)
    result = tail(redis_server, "--format", "%(levelname)s|%(name)s|%(message)s|%(missing)s", "-n", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout == "INFO|app.db|record 1 app.db|-\nWARNING|app.db.pool|record 2 app.db.pool|-\n"


def test_a_filter_matching_nothing_stops_at_the_scan_limit_and_says_so(redis_server: RedisServer) -> None:
    populate(redis_server, 300)
    result = tail(redis_server, "--grep", "record 5 ", "--scan-limit", "200")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # record 5 is older than the newest 200
    assert result.stderr == (
        "logrelay tail: 0 of 10 records found in the newest 200 entries; --scan-limit 200 stopped the search\n"
    )
    assert seqs(tail(redis_server, "--grep", "record 5 ", "--scan-limit", "300")) == [5]


def test_entries_that_cannot_be_rendered_are_noted_on_stderr_and_skipped(redis_server: RedisServer) -> None:
    added = populate(redis_server, 2)
    with redis_server.client() as client:
        other_version = client.xadd("logrelay", {**added[0][1], b"v": b"2"})  # type: ignore[dict-item]
        broken = client.xadd("logrelay", {**added[0][1], b"record": b'{"msg": '})  # type: ignore[dict-item]
    populate(redis_server, 1)
    result = tail(redis_server)
    assert seqs(result) == [0, 1, 0]
    notes = result.stderr.splitlines()
    assert len(notes) == 2
    assert notes[0] == f"entry {other_version.decode()} skipped: unsupported entry schema version b'2'"
    assert notes[1].startswith(f"entry {broken.decode()} skipped: record is not valid JSON: ")


def test_an_absent_stream_prints_nothing(redis_server: RedisServer) -> None:
    result = tail(redis_server, "--stream", "nothing-here")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


def test_a_tail_creates_no_group_and_writes_nothing(redis_server: RedisServer) -> None:
    populate(redis_server, 30)
    with redis_server.client() as client:
        before = client.xinfo_stream("logrelay")
    for args in (["-n", "5"], ["--level", "error", "--format", "json"], ["--grep", "never", "--scan-limit", "7"]):
        assert tail(redis_server, *args).exit_code == 0
    with redis_server.client() as client:
        assert client.xinfo_groups("logrelay") == []
        assert client.keys("*") == [b"logrelay"]
        after = client.xinfo_stream("logrelay")
    assert after["length"] == before["length"] == 30
    assert after["last-generated-id"] == before["last-generated-id"]


def test_a_bad_regex_is_a_usage_error(redis_server: RedisServer) -> None:
    result = tail(redis_server, "--grep", "(unclosed")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: invalid regular expression '(unclosed': missing ), unterminated subpattern at position 0"]
    assert "Traceback" not in result.output
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--level", "loud"], "Invalid value for '--level': unknown level 'loud'"),
        (["--format", "%(message)"], "missing conversion character after %(message)"),
        (["--format", "%(message)d"], "%(message)d cannot render message"),
        (["-n", "-1"], "Invalid value for '-n' / '--lines'"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], message: str) -> None:
    result = tail(None, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_unreachable_redis_is_one_line_and_exit_1() -> None:
    port = free_port()
    result = CliRunner().invoke(main, ["tail", "--redis-url", f"redis://127.0.0.1:{port}/0"])
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot reach Redis at redis://127.0.0.1:{port}/0: Connection refused\n"
    assert result.stdout == ""
    result = CliRunner().invoke(main, ["tail", "-f", "--redis-url", f"redis://ops:s3cret@127.0.0.1:{port}/0"])
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot reach Redis at redis://ops:***@127.0.0.1:{port}/0: Connection refused\n"


def test_colour_by_level_when_asked(redis_server: RedisServer) -> None:
    populate(redis_server, 5)
    coloured = tail(redis_server, "--color")
    lines = coloured.stdout.splitlines()
    assert lines[0].startswith("\x1b[2m")  # DEBUG: dim
    assert lines[0].endswith("\x1b[0m")
    assert "\x1b[" not in lines[1]  # INFO: as is
    assert lines[2].startswith("\x1b[33m")  # WARNING: yellow
    assert lines[3].startswith("\x1b[31m")  # ERROR: red
    assert lines[4].startswith("\x1b[31m\x1b[1m")  # CRITICAL: bold red
    # Not a terminal (the runner's stdout): plain, unless asked.
    assert "\x1b[" not in tail(redis_server).stdout


def test_the_printer_colours_a_traceback_with_its_line_and_keeps_the_newline_outside() -> None:
    out = io.BytesIO()
    printer = TailPrinter(out, color=True, note=lambda text: None)
    printer.show([TailLine(b"1-0", b"boom\nTraceback (most recent call last):\n  ...\n", logging.ERROR)])
    assert out.getvalue() == b"\x1b[31mboom\nTraceback (most recent call last):\n  ...\x1b[0m\n"
    assert level_style(None) == {} == level_style(logging.INFO)
    assert level_style(5) == {"dim": True}
    assert level_style(45) == {"fg": "red"}


def test_the_printer_flushes_lines_before_a_note_and_reports_a_closed_pipe() -> None:
    events: list[str] = []

    class Recording(io.BytesIO):
        def flush(self) -> None:
            events.append(f"flush {self.getvalue()!r}")

    printer = TailPrinter(Recording(), color=False, note=lambda text: events.append(f"note {text}"))
    printer.show([TailLine(b"1-0", b"a\n", 20), Unrenderable(b"2-0", "bad"), TailLine(b"3-0", b"b\n", 20)])
    assert events == ["flush b'a\\n'", "note entry 2-0 skipped: bad", "flush b'a\\nb\\n'"]

    class Closed(io.BytesIO):
        def write(self, data: object) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(OutputClosed):
        TailPrinter(Closed(), color=False, note=print).show([TailLine(b"1-0", b"a\n", 20)])


def test_a_senders_escape_sequences_reach_a_terminal_escaped(redis_server: RedisServer) -> None:
    message = "login ok\x1b]0;owned\x07\x1b[2J\r\u009b fine é\tend"
    record = logging.LogRecord("app.web", logging.WARNING, "/srv/app.py", 7, message, None, None)
    with redis_server.client() as client:
        client.xadd("logrelay", entry_for(record))  # type: ignore[arg-type]
    # Coloured (for a terminal): shown, not obeyed.
    coloured = CliRunner().invoke(main, ["tail", "--redis-url", redis_server.url, "--color"], color=True)
    assert coloured.exit_code == 0, coloured.output
    text = coloured.stdout
    assert "login ok\\x1b]0;owned\\x07\\x1b[2J\\x0d\\x9b fine é\tend" in text
    assert not {"\x07", "\r", "\u009b"} & set(text)
    assert "\x1b]" not in text
    # Into a pipe or a file: the central file's line, byte for byte.
    plain = tail(redis_server)
    assert message in plain.stdout

    out = io.BytesIO()
    TailPrinter(out, color=False, note=print, escape=True).show([TailLine(b"1-0", b"a\x1b[2Jb\n", 20)])
    assert out.getvalue() == b"a\\x1b[2Jb\n"


def test_a_field_no_record_has_is_a_warning_naming_the_nearest_and_renders_the_placeholder(
    redis_server: RedisServer,
) -> None:
    populate(redis_server, 3)
    result = tail(redis_server, "--format", "%(levelnam)s %(message)s")
    assert result.exit_code == 0, result.output
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("Warning")]
    assert "%(levelnam)s" in warning
    assert "did you mean %(levelname)s?" in warning
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("- record ") for line in lines)
