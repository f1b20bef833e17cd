"""Settings parsing and validation, and how the CLI maps options onto them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from consumers.settings import FileConsumerSettings
from relay.cli import main
from relay.cli.consume import file_consumer_settings
from relay.cli.options import catcher_settings, parse_byte_size
from relay.common.addresses import ListenAddress
from relay.common.redis_client import RedisSettings
from relay.common.stream import StreamKeys
from relay.settings import CatcherSettings


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1048576", 1048576), ("512KiB", 512 * 1024), ("1MiB", 1 << 20), ("1m", 1 << 20), ("2 GiB", 2 << 30)],
)
def test_byte_sizes(text: str, expected: int) -> None:
    assert parse_byte_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "1PB", "-1", "1.5.2M"])
def test_bad_byte_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="not a byte size"):
        parse_byte_size(text)


@pytest.mark.parametrize(
    ("text", "host", "port", "loopback"),
    [
        ("127.0.0.1:9020", "127.0.0.1", 9020, True),
        ("[::1]:9021", "::1", 9021, True),
        ("localhost:1", "localhost", 1, True),
        (":9020", "0.0.0.0", 9020, False),
        ("10.1.2.3:0", "10.1.2.3", 0, False),
    ],
)
def test_listen_addresses(text: str, host: str, port: int, loopback: bool) -> None:
    address = ListenAddress.parse(text)
    assert (address.host, address.port, address.is_loopback) == (host, port, loopback)


@pytest.mark.parametrize("text", ["9020", "host:", "host:port", "h:70000"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|out of range"):
        ListenAddress.parse(text)


def test_redis_url_validation_and_masking() -> None:
    settings = RedisSettings.from_url("redis://user:s3cret@redis.internal:6380/2")
    assert "s3cret" not in settings.safe_url
    assert settings.safe_url == "redis://user:***@redis.internal:6380/2"
    with pytest.raises(ValueError, match="scheme"):
        RedisSettings.from_url("http://localhost:6379")
    with pytest.raises(ValueError, match="no host"):
        RedisSettings.from_url("redis://")


def test_derived_keys_carry_the_stream_as_hash_tag() -> None:
    assert StreamKeys("logrelay").dead_letters == "{logrelay}:dead"
    assert StreamKeys("{t1}:logs").dead_letters == "{t1}:logs:dead"
    assert StreamKeys("logs", "custom-dead").dead_letters == "custom-dead"
    with pytest.raises(ValueError, match="empty"):
        StreamKeys("")


def test_linger_is_bounded() -> None:
    with pytest.raises(ValueError, match="linger-ms"):
        CatcherSettings(linger_ms=-0.1)
    with pytest.raises(ValueError, match="linger-ms"):
        CatcherSettings(linger_ms=1000.1)


def test_buffer_must_hold_one_maximum_record() -> None:
    with pytest.raises(ValueError, match="buffer-bytes"):
        CatcherSettings(buffer_bytes=1024)


def test_cli_defaults_build_default_settings() -> None:
    # Every default is written once, in the settings classes: an option without
    # a value gives exactly what the dataclass gives.
    ctx = main.commands["catch"].make_context("catch", [])
    settings = catcher_settings(ctx.params)
    assert settings == dataclasses.replace(CatcherSettings(), catcher_id=settings.catcher_id)
    assert str(settings.listen) == "127.0.0.1:9020"
    assert settings.limits.max_frame_bytes == 1 << 20


def test_consumer_cli_defaults_build_default_settings(tmp_path: Path) -> None:
    output = tmp_path / "central.log"
    ctx = main.commands["consume"].commands["file"].make_context("file", ["--output", str(output)])  # type: ignore[attr-defined]
    settings = file_consumer_settings(ctx.params)
    assert settings == dataclasses.replace(FileConsumerSettings(output), consumer=settings.consumer)


def test_cli_options_map_onto_settings() -> None:
    args = ["--listen", "[::1]:7000", "--stream", "s", "--max-frame-bytes", "64KiB", "--buffer-bytes", "8MiB"]
    ctx = main.commands["catch"].make_context("catch", [*args, "--linger-ms", "0.5"])
    settings = catcher_settings(ctx.params)
    assert (settings.listen.host, settings.listen.port) == ("::1", 7000)
    assert settings.keys.records == "s"
    assert settings.limits.max_frame_bytes == 64 * 1024
    assert settings.buffer_bytes == 8 << 20
    assert settings.linger_ms == 0.5


def test_a_frame_limit_above_the_default_skip_cap_still_starts() -> None:
    # --max-frame-bytes 100MiB was a valid catcher before --max-skip-bytes existed: an upgrade must not
    # refuse it; the frames over it are then skipped up to the frame limit itself.
    catch = main.commands["catch"]
    big = ["--max-frame-bytes", "100MiB", "--max-partial-bytes", "1GiB"]
    limits = catcher_settings(catch.make_context("catch", big).params).limits
    assert (limits.max_frame_bytes, limits.max_skip_bytes) == (100 << 20, 100 << 20)
    given = catch.make_context("catch", [*big, "--max-skip-bytes", "1GiB"]).params
    assert catcher_settings(given).limits.max_skip_bytes == 1 << 30
    smaller = catch.make_context("catch", ["--max-frame-bytes", "2MiB", "--max-skip-bytes", "1MiB"]).params
    with pytest.raises(ValueError, match="must be at least max-frame-bytes"):
        catcher_settings(smaller)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "nowhere"], "expected HOST:PORT"),
        (["--max-frame-bytes", "big"], "not a byte size"),
        (["--buffer-bytes", "1KiB"], "buffer-bytes must hold"),
        (["--linger-ms", "-1"], "--linger-ms"),
        (["--linger-ms", "5000"], "--linger-ms"),
    ],
)
def test_bad_options_are_one_line_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["catch", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["catch", "up", "consume", "tail", "status"])
def test_a_redis_url_naming_no_redis_is_a_configuration_error_exit_1(command: str) -> None:
    args = {"consume": ["consume", "file", "--output", "x.log"], "up": ["up", "--output", "x.log"]}.get(
        command, [command]
    )
    result = CliRunner().invoke(main, [*args, "--redis-url", "http://x"])
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert "unsupported Redis URL scheme 'http'" in line
    assert "--redis-url" in line
    assert "redis://[user:password@]host:port/db" in line
    assert "Traceback" not in result.output


def test_rotation_options_map_onto_the_consumers_settings(tmp_path: Path) -> None:
    args = ["--output", str(tmp_path / "central.log"), "--rotate-size", "100MiB", "--rotate-interval", "daily"]
    args += ["--keep", "7", "--keep-age", "30d", "--keep-bytes", "10GiB", "--compress", "gzip"]
    for command in ("up", "consume"):
        ctx = (
            main.commands["up"].make_context("up", list(args))
            if command == "up"
            else main.commands["consume"].commands["file"].make_context("file", list(args))  # type: ignore[attr-defined]
        )
        rotation = file_consumer_settings(ctx.params, RedisSettings()).rotation
        assert (rotation.size, rotation.interval, rotation.compress) == (100 << 20, 86400, "gzip")
        assert (rotation.keep, rotation.keep_age, rotation.keep_bytes) == (7, 30 * 86400, 10 << 30)
    assert not FileConsumerSettings(tmp_path / "central.log").rotation.rotates  # off unless asked for


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rotate-size", "huge"], "not a byte size"),
        (["--rotate-interval", "fortnightly"], "not a duration"),
        (["--rotate-interval", "0.5s"], "--rotate-interval must be at least a second"),
        (["--keep-age", "-3d"], "not a duration"),
        (["--compress", "zip"], "'zip' is not one of"),
    ],
)
def test_bad_rotation_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["consume", "file", "--output", str(tmp_path / "central.log"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_rotating_a_symlinked_output_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "real.log"
    target.touch()
    link = tmp_path / "central.log"
    link.symlink_to(target)
    result = CliRunner().invoke(main, ["consume", "file", "--output", str(link), "--rotate-size", "1MiB"])
    assert result.exit_code == 2
    assert "is a symbolic link: with rotation, give the file itself" in result.output
    assert "Traceback" not in result.output


def test_waiting_for_replicas_of_the_embedded_broker_is_a_usage_error(tmp_path: Path) -> None:
    args = ["up", "--output", str(tmp_path / "central.log"), "--wait-replicas", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--wait-replicas needs --redis-url: the embedded broker has no replicas" in result.output
    assert "Traceback" not in result.output


def test_wait_replicas_maps_onto_the_catchers_settings() -> None:
    ctx = main.commands["catch"].make_context("catch", ["--wait-replicas", "2", "--wait-timeout-ms", "250"])
    settings = catcher_settings(ctx.params)
    assert (settings.wait_replicas, settings.wait_timeout_ms) == (2, 250.0)
