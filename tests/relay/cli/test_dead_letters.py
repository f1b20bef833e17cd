"""``logrelay dead-letters`` in-process (click's runner) against a real redis-server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from relay.cli import main
from relay.cli.dead_letters import HEX_PREVIEW
from relay.common.stream import RECORD_FIELDS_WITHOUT_SEQ
from relay.decode.frames import DecodeLimits, FrameDecoder
from tests.support.amplifiers import AMPLIFIERS, frame
from tests.support.dead_letters import big_frame, consumer_dead_letter, publish_dead_letter, refused
from tests.support.entries import entry_for, make_record
from tests.support.realredis import RedisServer

DEAD, RECORDS = "{logrelay}:dead", "logrelay"


def run(server: RedisServer | str, *args: str) -> Result:
    url = server if isinstance(server, str) else server.url
    command, *rest = args
    return CliRunner().invoke(main, ["dead-letters", command, "--redis-url", url, *rest])


def one_line_error(result: Result, code: int, message: str) -> None:
    """One "Error: ..." line holding ``message`` (after click's usage hint, for a usage error), no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    assert message in errors[0]
    if code == 1:
        assert result.output.strip() == errors[0]


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return redis_server.client()


def test_replay_with_a_raised_limit_publishes_the_catchers_record_once(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    letter_id = publish_dead_letter(client, refused(big_frame())).decode()
    result = run(redis_server, "replay", letter_id, "--max-decoded-bytes", "4MiB")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "replayed 1, still refused 0"

    (expected,) = FrameDecoder(DecodeLimits(max_decoded_bytes=4 << 20)).feed(big_frame())
    ((_, fields),) = client.xrange(RECORDS)
    # The catcher's entry, with an identity of the replay's own (a token, the record's number).
    seq = fields.pop(b"seq")
    assert re.fullmatch(rb"[0-9a-f]{16}:1", seq)
    assert list(fields.items()) == [
        (b"v", b"1"),
        (b"record", expected),
        (b"client", b"10.0.0.7:51234"),
        (b"catcher", b"catcher-a-1"),
        (b"received", b"1700000000.250000"),
    ]
    assert client.xlen(DEAD) == 0
    # Again, by id: the letter is gone (one line, exit 1), nothing is added.
    one_line_error(
        run(redis_server, "replay", letter_id, "--max-decoded-bytes", "4MiB"), 1, f"no dead letter {letter_id}"
    )
    again = run(redis_server, "replay", "--all", "--max-decoded-bytes", "4MiB")
    assert again.exit_code == 0
    assert client.xlen(RECORDS) == 1


def test_a_letter_that_still_fails_stays_and_the_status_says_so(redis_server: RedisServer, client: redis.Redis) -> None:
    big = publish_dead_letter(client, refused(big_frame())).decode()
    attack = next(case for case in AMPLIFIERS if case.refused and "weigh" in case.refused)
    hostile = publish_dead_letter(client, refused(frame(attack.build()), DecodeLimits()), seq=2).decode()

    result = run(redis_server, "replay", "--all", "--max-decoded-bytes", "64KiB")
    assert result.exit_code == 1
    assert f"still refused {big} (catcher, 10.0.0.7:51234, 2023-11-14T22:13:20.250000Z)" in result.output
    assert result.output.splitlines()[-1] == "replayed 0, still refused 2"
    assert client.xlen(DEAD) == 2
    assert client.xlen(RECORDS) == 0

    result = run(redis_server, "replay", "--all", "--max-decoded-bytes", "64MiB", "--max-depth", "100")
    assert result.exit_code == 1
    assert f"still refused {hostile} " in result.output
    assert result.output.splitlines()[-1] == "replayed 1, still refused 1"
    assert [entry_id.decode() for entry_id, _ in client.xrange(DEAD)] == [hostile]
    assert client.xlen(RECORDS) == 1


def test_dry_run_reports_and_writes_nothing(redis_server: RedisServer, client: redis.Redis) -> None:
    letter_id = publish_dead_letter(client, refused(big_frame())).decode()
    result = run(redis_server, "replay", "--all", "--dry-run", "--max-decoded-bytes", "4MiB")
    assert result.exit_code == 0
    assert f"would replay {letter_id} " in result.output
    assert result.output.splitlines()[-1] == "would replay 1, still refused 0"
    assert (client.xlen(DEAD), client.xlen(RECORDS)) == (1, 0)


def test_a_consumer_letter_replays_its_original_fields(redis_server: RedisServer, client: redis.Redis) -> None:
    # Its identity stays behind (the file may hold later records of its
    # catcher, and a consumer skips a record numbered below what it wrote):
    # the replay gives it one of its own.
    original = {**entry_for(make_record("could not write %s", ("this",))), b"seq": b"0123456789abcdef:5"}
    letter_id = consumer_dead_letter(client, original).decode()
    result = run(redis_server, "replay", letter_id)
    assert result.exit_code == 0, result.output
    assert f"replayed {letter_id} (consumer, 10.1.2.3:4000, " in result.output
    ((_, fields),) = client.xrange(RECORDS)
    replayed = list(fields.items())
    assert replayed[:-1] == [(name.encode(), original[name.encode()]) for name in RECORD_FIELDS_WITHOUT_SEQ]
    assert replayed[-1][0] == b"seq"
    assert re.fullmatch(rb"[0-9a-f]{16}:1", replayed[-1][1])
    assert replayed[-1][1] != original[b"seq"]
    assert client.xlen(DEAD) == 0


def test_replay_needs_ids_or_all_and_a_stream_at_its_length_stops_it(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    assert run(redis_server, "replay").exit_code == 2
    assert run(redis_server, "replay", "1-1", "--all").exit_code == 2
    one_line_error(run(redis_server, "replay", "not-an-id"), 2, "not a dead letter id: 'not-an-id'")
    client.xadd(RECORDS, {"v": "1"})
    publish_dead_letter(client, refused(big_frame()))
    result = run(redis_server, "replay", "--all", "--max-decoded-bytes", "4MiB", "--max-stream-length", "1")
    assert result.exit_code == 1
    assert "stopped: the records stream is full" in result.output
    assert (client.xlen(DEAD), client.xlen(RECORDS)) == (1, 1)


def test_list_json_and_table(redis_server: RedisServer, client: redis.Redis) -> None:
    assert run(redis_server, "list", "--json").output == "[]\n"
    assert "no dead letters in {logrelay}:dead" in run(redis_server, "list").output
    bad = refused(big_frame())
    catcher_id = publish_dead_letter(client, bad).decode()
    original = entry_for(make_record())
    consumer_id = consumer_dead_letter(client, original, reason="unknown schema version '9'").decode()

    result = run(redis_server, "list", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == [
        {
            "id": catcher_id,
            "kind": "catcher",
            "reason": "decoded record exceeds the maximum decoded size",
            "client": "10.0.0.7:51234",
            "time": "2023-11-14T22:13:20.250000Z",
            "received": "1700000000.250000",
            "size": len(bad.raw),
        },
        {
            "id": consumer_id,
            "kind": "consumer",
            "reason": "unknown schema version '9'",
            "client": "10.1.2.3:4000",
            "time": "2023-11-14T22:13:20.500000Z",
            "received": "1700000000.5",
            "size": len(original[b"record"]),
        },
    ]
    assert [item["id"] for item in json.loads(run(redis_server, "list", "--json", "--count", "1").output)] == [
        catcher_id
    ]
    table = run(redis_server, "list").output.splitlines()
    assert table[0].split() == ["ID", "TIME", "(UTC)", "KIND", "CLIENT", "SIZE", "REASON"]
    assert table[1].split()[:5] == [
        catcher_id,
        "2023-11-14T22:13:20.250000Z",
        "catcher",
        "10.0.0.7:51234",
        str(len(bad.raw)),
    ]
    assert len(table) == 3


def test_show_and_show_raw(redis_server: RedisServer, client: redis.Redis, tmp_path: Path) -> None:
    bad = refused(big_frame())
    letter_id = publish_dead_letter(client, bad).decode()
    result = run(redis_server, "show", letter_id)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[:3] == [f"id: {letter_id}", "kind: catcher", "time: 2023-11-14T22:13:20.250000Z"]
    assert "reason: decoded record exceeds the maximum decoded size" in lines
    assert f"raw: {len(bad.raw)} bytes (first {HEX_PREVIEW} shown)" in lines
    dump = [line for line in lines if re.match(r"[0-9a-f]{8}: ", line)]
    assert len(dump) == HEX_PREVIEW // 16
    assert dump[0].startswith("00000000: " + bad.raw[:2].hex())
    assert "client: 10.0.0.7:51234" in lines
    assert "received: 1700000000.250000" in lines

    raw = run(redis_server, "show", letter_id, "--raw")
    assert raw.exit_code == 0
    assert raw.stdout_bytes == bad.raw
    one_line_error(run(redis_server, "show", "1-1"), 1, "no dead letter 1-1 in {logrelay}:dead")


def test_purge_needs_yes_and_removes_what_it_says(redis_server: RedisServer, client: redis.Redis) -> None:
    ids = [client.xadd(DEAD, {"v": "1", "reason": str(n)}).decode() for n in range(5)]
    one_line_error(run(redis_server, "purge", "--all"), 2, "refusing to remove every dead letter without --yes")
    assert client.xlen(DEAD) == 5
    one_line_error(run(redis_server, "purge", ids[0], "9-9", "--yes"), 1, "no dead letter 9-9")
    assert client.xlen(DEAD) == 5  # nothing removed when one id is unknown
    assert run(redis_server, "purge", ids[0], "--yes").output == "removed 1 dead letter(s)\n"
    assert run(redis_server, "purge", "--before", ids[3], "--yes").output == "removed 2 dead letter(s)\n"
    assert [entry_id.decode() for entry_id, _ in client.xrange(DEAD)] == ids[3:]
    assert run(redis_server, "purge", "--all", "--yes").output == "removed 2 dead letter(s)\n"
    assert client.xlen(DEAD) == 0
    assert run(redis_server, "purge", "--all", ids[0], "--yes").exit_code == 2


def test_redis_unreachable_is_one_line_exit_1(redis_server: RedisServer) -> None:
    url = redis_server.url
    redis_server.stop()
    for args in (["list"], ["show", "1-1"], ["replay", "--all"], ["purge", "--all", "--yes"]):
        one_line_error(run(url, *args), 1, f"cannot reach Redis at {url}: Connection refused")


def test_redis_acl_credentials_from_the_url(tmp_path: Path, client: redis.Redis) -> None:
    acl = ("--user", "default", "off", "--user", "ops", "on", ">s3cret-pw", "~*", "&*", "+@all")
    server = RedisServer(tmp_path / "acl", extra_args=acl, username="ops", password="s3cret-pw").start()
    try:
        with server.client() as acl_client:
            letter_id = publish_dead_letter(acl_client, refused(big_frame())).decode()
        good = f"redis://ops:s3cret-pw@127.0.0.1:{server.port}/0"
        result = run(good, "replay", "--all", "--max-decoded-bytes", "4MiB")
        assert result.exit_code == 0, result.output
        assert f"replayed {letter_id} " in result.output
        wrong = run(f"redis://ops:wrong-pw@127.0.0.1:{server.port}/0", "list")
        one_line_error(
            wrong,
            1,
            f"Redis refused the password for redis://ops:***@127.0.0.1:{server.port}/0 "
            "(--redis-url, LOGRELAY_DEAD_LETTERS_LIST_REDIS_URL): ",
        )
        assert "wrong-pw" not in wrong.output
    finally:
        server.stop()


def test_a_senders_escape_sequences_are_shown_not_obeyed(redis_server: RedisServer, client: redis.Redis) -> None:
    # A sender names a forbidden global whose name carries terminal escapes: the reason holds them.
    evil = "cos\nsystem\x1b]0;owned\x07\x1b[2J\x9b\r\n(S'id'\ntR.".encode()
    bad = refused(frame(evil), DecodeLimits())
    assert "\x1b]0;owned" in bad.reason
    letter_id = publish_dead_letter(client, bad, sender="10.0.0.7:1\x1b[31m").decode()
    consumer_id = consumer_dead_letter(client, {b"v": b"1", b"record": b'{"msg": "\x1b]52;c;cHdu\x07"}'}).decode()

    def on_a_terminal(*args: str) -> str:
        command, *rest = args
        # color=True: click passes escape sequences through, as it does to a terminal.
        result = CliRunner().invoke(main, ["dead-letters", command, "--redis-url", redis_server.url, *rest], color=True)
        return result.output

    for output in (
        on_a_terminal("list"),
        on_a_terminal("show", letter_id),
        on_a_terminal("show", consumer_id),
        on_a_terminal("replay", "--all"),
    ):
        assert not {"\x1b", "\x07", "\r", "\x9b"} & set(output), output
    assert "os.system\\x1b]0;owned\\x07\\x1b[2J" in on_a_terminal("show", letter_id)
    assert "10.0.0.7:1\\x1b[31m" in on_a_terminal("list")
    assert run(redis_server, "show", letter_id, "--raw").stdout_bytes == evil  # --raw stays exact
