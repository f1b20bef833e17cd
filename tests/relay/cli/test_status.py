"""``logrelay status`` against a real Redis: the table, ``--json`` and ``--max-lag``."""

from __future__ import annotations

import time

import orjson
from click.testing import CliRunner

from relay.cli import main
from relay.common.stream import StreamKeys
from tests.support.polling import wait_until
from tests.support.realredis import RedisServer, free_port

KEYS = StreamKeys()


def populate(redis_server: RedisServer, records: int, read: int) -> None:
    with redis_server.client() as client:
        for n in range(records):
            client.xadd(KEYS.records, {"v": "1", "n": str(n)})
        client.xgroup_create(KEYS.records, "logrelay-file", id="0")
        if read:
            client.xreadgroup("logrelay-file", "host-7", {KEYS.records: ">"}, count=read)
        client.xadd(KEYS.dead_letters, {"v": "1", "reason": "frame of 2000000 bytes", "client": "10.1.1.1:4000"})


def test_json_reports_each_groups_lag_and_pending_and_the_dead_letters(redis_server: RedisServer) -> None:
    populate(redis_server, records=12, read=5)
    result = CliRunner().invoke(main, ["status", "--json", "--redis-url", redis_server.url])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert [(g["name"], g["lag"], g["pending"]) for g in report["groups"]] == [("logrelay-file", 7, 5)]
    assert report["groups"][0]["consumers"][0]["name"] == "host-7"
    assert report["dead_letters"] == 1
    assert report["newest_dead_letters"][0]["reason"] == "frame of 2000000 bytes"
    assert report["length"] == 12


def test_the_table_for_people(redis_server: RedisServer) -> None:
    populate(redis_server, records=3, read=1)
    result = CliRunner().invoke(main, ["status", "--redis-url", redis_server.url])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("stream 'logrelay': 3 entries, first ")
    (group,) = [line for line in lines if line.strip().startswith("logrelay-file")]
    assert group.split()[:3] == ["logrelay-file", "2", "1"]
    assert "dead letters ('{logrelay}:dead'): 1" in lines


def test_max_lag_exits_1_naming_the_group_that_lags(redis_server: RedisServer) -> None:
    populate(redis_server, records=12, read=5)
    runner = CliRunner()
    ok = runner.invoke(main, ["status", "--max-lag", "7", "--redis-url", redis_server.url])
    assert ok.exit_code == 0, ok.output
    late = runner.invoke(main, ["status", "--max-lag", "6", "--redis-url", redis_server.url])
    assert late.exit_code == 1
    assert "group 'logrelay-file' has 7 entries left to read (more than --max-lag 6)" in late.stderr


def test_an_unreachable_redis_is_one_line_and_exit_1() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(main, ["status", "--redis-url", url])
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot reach Redis at {url}: Connection refused\n"


def test_a_bad_redis_url_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["status", "--redis-url", "http://127.0.0.1:6379"])
    assert result.exit_code == 2
    assert "unsupported Redis URL scheme 'http'" in result.stderr


def test_garbage_in_the_heartbeats_is_skipped_or_shown_never_a_traceback(redis_server: RedisServer) -> None:
    now = time.time()
    with redis_server.client() as client:
        client.zadd(KEYS.processes, {b"no-colon": now, b"\xff\xfe:x": now, "catcher:a": now, "consumer:b": now})
        client.set(
            KEYS.heartbeat("catcher", "a"),
            b'{"kind": "catcher", "id": "a", "rates": [1], "beat": 1, "awaiting_replicas": "x"}',
        )
        client.set(KEYS.heartbeat("consumer", "b"), b'{"kind": "consumer", "rates": {"lines_written": "x"}}')
    for args in ([], ["--json"], ["--max-lag", "0"]):
        result = CliRunner().invoke(main, ["status", "--redis-url", redis_server.url, *args])
        assert result.exit_code == 0, result.output
        assert result.exception is None, result.exception
    table = CliRunner().invoke(main, ["status", "--redis-url", redis_server.url]).stdout
    (consumer,) = [line for line in table.splitlines() if line.strip().startswith("consumer")]
    assert "? lines/s" in consumer


def test_escape_sequences_in_what_others_wrote_are_shown_not_obeyed(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        client.xadd(KEYS.dead_letters, {"v": "1", "reason": "global os.system\x1b]0;owned\x07\r", "client": "\x9b2J"})
        client.zadd(KEYS.processes, {"catcher:a": time.time()})
        client.set(KEYS.heartbeat("catcher", "a"), orjson.dumps({"kind": "catcher", "address": "\x1b[2J:9020"}))
    result = CliRunner().invoke(main, ["status", "--redis-url", redis_server.url], color=True)
    assert result.exit_code == 0, result.output
    assert "os.system\\x1b]0;owned\\x07\\x0d" in result.stdout
    assert "\\x1b[2J:9020" in result.stdout
    assert "\\x9b2J" in result.stdout
    assert not {"\x1b", "\x07", "\r", "\x9b"} & set(result.stdout)


def test_max_lag_fails_when_no_group_reads_a_stream_that_holds_entries(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        client.xadd(KEYS.records, {"v": "1"})
    result = CliRunner().invoke(main, ["status", "--max-lag", "100", "--redis-url", redis_server.url])
    assert result.exit_code == 1
    assert "no consumer group reads stream 'logrelay', which holds 1 entries" in result.stderr
    with redis_server.client() as client:
        client.delete(KEYS.records)
    # Nothing published yet: nothing waits.
    assert CliRunner().invoke(main, ["status", "--max-lag", "0", "--redis-url", redis_server.url]).exit_code == 0


def test_a_catcher_holding_records_for_its_replicas_says_how_many(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        client.zadd(KEYS.processes, {"catcher:a": time.time()})
        beat = {"kind": "catcher", "id": "a", "connections": 3, "wait_replicas": 1, "awaiting_replicas": 1200}
        client.set(KEYS.heartbeat("catcher", "a"), orjson.dumps(beat))
    result = CliRunner().invoke(main, ["status", "--redis-url", redis_server.url])
    assert result.exit_code == 0, result.output
    (catcher,) = [line for line in result.stdout.splitlines() if line.strip().startswith("catcher")]
    assert "3 connections, 1,200 awaiting 1 replicas" in catcher


def test_a_catcher_lists_its_other_inputs_beside_its_address(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        client.zadd(KEYS.processes, {"catcher:a": time.time()})
        beat = {
            "kind": "catcher",
            "id": "a",
            "address": "127.0.0.1:9020",
            "inputs": {"syslog": "127.0.0.1:5514", "http": "[::1]:8080"},
        }
        client.set(KEYS.heartbeat("catcher", "a"), orjson.dumps(beat))
    result = CliRunner().invoke(main, ["status", "--redis-url", redis_server.url])
    assert result.exit_code == 0, result.output
    (catcher,) = [line for line in result.stdout.splitlines() if line.strip().startswith("catcher")]
    assert "127.0.0.1:9020, syslog 127.0.0.1:5514, http [::1]:8080" in catcher


def test_a_group_nobody_reads_is_marked_stale_in_the_table_and_the_json(redis_server: RedisServer) -> None:
    populate(redis_server, records=4, read=2)
    with redis_server.client() as client:
        client.xgroup_create(KEYS.records, "leftover", id="0")
    runner = CliRunner()
    table = runner.invoke(main, ["status", "--redis-url", redis_server.url]).stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in table if line.strip().startswith(("logrelay-file", "leftover"))}
    assert (rows["leftover"][-1], rows["logrelay-file"][-1]) == ("stale", "reading")
    assert any("XGROUP DESTROY" in line for line in table)
    report = orjson.loads(runner.invoke(main, ["status", "--json", "--redis-url", redis_server.url]).stdout)
    assert {g["name"]: g["stale"] for g in report["groups"]} == {"logrelay-file": False, "leftover": True}

    # Past the threshold, the group whose consumer stopped reading is stale too.
    def idle_ms() -> int:
        with redis_server.client() as client:
            return int(client.xinfo_consumers(KEYS.records, "logrelay-file")[0]["idle"])

    wait_until(lambda: idle_ms() > 1000, timeout=20, what="the consumer idle for a second")
    result = runner.invoke(main, ["status", "--json", "--stale-group-after", "1s", "--redis-url", redis_server.url])
    assert [g["stale"] for g in orjson.loads(result.stdout)["groups"]] == [True, True]
