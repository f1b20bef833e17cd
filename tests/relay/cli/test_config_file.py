"""``--config FILE``: values from TOML below the command line and the environment, every key checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from relay.cli import main


def show(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["config", "show", "--json", *args], env=env or {})
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = orjson.loads(result.stdout)
    return report


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "logrelay.toml"
    path.write_text(text)
    return path


def test_precedence_is_command_line_then_environment_then_file_then_default(tmp_path: Path) -> None:
    path = config(tmp_path, '[catch]\nmax-depth = 20\nlinger-ms = 7\nlisten = "127.0.0.1:9999"\n')
    report = show("catch", "--config", str(path), "--max-depth", "12", env={"LOGRELAY_CATCH_LINGER_MS": "3"})
    settings = report["settings"]
    assert settings["--max-depth"] == {"value": 12, "source": "command line"}
    assert settings["--linger-ms"] == {"value": 3.0, "source": "environment", "from": "LOGRELAY_CATCH_LINGER_MS"}
    assert settings["--listen"] == {"value": "127.0.0.1:9999", "source": "config file", "from": f"{path}, [catch]"}
    assert settings["--max-frame-bytes"] == {"value": 1 << 20, "source": "default"}
    assert report["config_file"] == str(path)


def test_top_level_keys_apply_to_every_command_that_takes_them_and_tables_narrow_them(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        'stream = "shared"\nredis-url = "redis://app:s3cret@127.0.0.1:6390/2"\n'
        '[consume]\nbatch-size = 50\n[consume.file]\noutput = "/var/log/central.log"\nstream = "mine"\n',
    )
    consume = show("--config", str(path), "consume", "file")["settings"]
    assert consume["--stream"]["value"] == "mine"
    assert consume["--stream"]["from"] == f"{path}, [consume.file]"
    assert consume["--batch-size"] == {"value": 50, "source": "config file", "from": f"{path}, [consume]"}
    assert consume["--output"]["value"] == "/var/log/central.log"
    # The password never shows.
    assert consume["--redis-url"]["value"] == "redis://app:***@127.0.0.1:6390/2"
    assert show("catch", "--config", str(path))["settings"]["--stream"]["value"] == "shared"


def test_the_file_can_come_from_the_environment_and_lists_fill_repeatable_options(tmp_path: Path) -> None:
    path = config(tmp_path, '[catch]\nallow = ["10.0.0.0/8", "127.0.0.1/32"]\nproxy-protocol = true\n')
    settings = show("catch", env={"LOGRELAY_CONFIG": str(path)})["settings"]
    assert settings["--allow"]["value"] == ["10.0.0.0/8", "127.0.0.1/32"]
    assert settings["--proxy-protocol"]["value"] is True


def test_a_required_option_left_unset_is_shown_as_missing() -> None:
    assert show("consume", "file")["settings"]["--output"] == {"value": None, "source": "missing (required)"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[catch]\nlisen = ":1"\n', "unknown key 'lisen' at [catch] of {path}: not an option of catch"),
        ('[catch]\nlisen = ":1"\n', "(did you mean 'listen'?)"),
        ('[cach]\nlisten = ":1"\n', "unknown table [cach] in {path} (did you mean [catch]?)"),
        ("outpt = 1\n", "unknown key 'outpt' at the top level of {path}: not an option of any command"),
        ("outpt = 1\n", "(did you mean 'output'?)"),
        ('[consume.file]\nlisten = ":1"\n', "unknown key 'listen' at [consume.file] of {path}"),
        ("x = \n", "{path} is not valid TOML"),
    ],
)
def test_an_unknown_key_or_table_is_a_one_line_error_naming_it_and_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = config(tmp_path, text)
    # Checked whichever command reads the file, before anything runs.
    result = CliRunner().invoke(main, ["status", "--config", str(path)])
    assert result.exit_code == 2
    assert message.format(path=path) in result.output
    assert "Traceback" not in result.output


def test_file_values_go_through_the_options_own_checks(tmp_path: Path) -> None:
    path = config(tmp_path, "[catch]\nmax-depth = 500\n")
    result = CliRunner().invoke(main, ["catch", "--config", str(path)])
    assert result.exit_code == 2
    assert "--max-depth" in result.output
    assert "500 is not in the range" in result.output


def test_config_show_names_the_commands_when_none_is_given() -> None:
    result = CliRunner().invoke(main, ["config", "show"])
    assert result.exit_code == 2
    assert "name the command whose settings to show: catch, consume file" in result.output


def test_config_show_as_text_lists_each_option_with_its_source(tmp_path: Path) -> None:
    path = config(tmp_path, '[up]\nlisten = "127.0.0.1:9100"\n')
    result = CliRunner().invoke(main, ["config", "show", "up", "--config", str(path)], env={})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"# logrelay up (config file {path})"
    (listen,) = [line for line in lines if line.startswith("--listen ")]
    assert listen.split() == ["--listen", "127.0.0.1:9100", "config", "file", f"({path},", "[up])"]


def test_every_options_variable_is_its_long_name_in_capitals() -> None:
    """``--max-frame-bytes`` of ``catch`` is ``LOGRELAY_CATCH_MAX_FRAME_BYTES``, as the README says: every option."""
    from relay.cli.config_file import leaf_commands, option_keys

    for path, command in leaf_commands(main):
        if path[0] == "config":
            continue
        for key, name in option_keys(command).items():
            if not key.startswith("no-"):
                assert name == key.replace("-", "_"), f"{' '.join(path)} --{key} reads LOGRELAY_..._{name.upper()}"


def test_what_to_purge_comes_from_the_command_line_alone(tmp_path: Path) -> None:
    path = config(tmp_path, "[dead-letters.purge]\nall = true\n")
    result = CliRunner().invoke(main, ["dead-letters", "purge", "--config", str(path)])
    assert result.exit_code == 2
    assert "unknown key 'all' at [dead-letters.purge]" in result.output
    result = CliRunner().invoke(main, ["dead-letters", "purge"], env={"LOGRELAY_DEAD_LETTERS_PURGE_ALL": "1"})
    assert result.exit_code == 2  # the variable is not read: nothing says what to purge


def test_the_format_is_read_from_its_variable() -> None:
    settings = show("consume", "file", env={"LOGRELAY_CONSUME_FILE_FORMAT": "json"})["settings"]
    assert settings["--format"] == {"value": "json", "source": "environment", "from": "LOGRELAY_CONSUME_FILE_FORMAT"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("redis-timeout = [1, 2]", "key 'redis-timeout' at top level of {path} takes one value, not a list"),
        ("[tail]\nlines = 1e400", "'inf' is not a valid integer range"),
        ("[tail]\nlogger = [1, {a = 1}]", "key 'logger' at [tail] of {path} takes one value, not a table"),
        ("[catch]\nmax-depth = [[1]]", "key 'max-depth' at [catch] of {path} takes one value, not a list"),
    ],
)
def test_a_value_of_the_wrong_shape_is_a_one_line_error_not_a_traceback(
    tmp_path: Path, text: str, message: str
) -> None:
    path = config(tmp_path, text)
    command = "catch" if "[catch]" in text else "tail"
    result = CliRunner().invoke(main, [command, "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert message.format(path=path) in result.output
    # Values go through the options' own types, as typed on the command line; one value fills a repeatable option.
    good = config(tmp_path, '[tail]\nlines = 3\nlogger = "app"\nfollow = false\nlevel = 30\n')
    settings = show("tail", "--config", str(good))["settings"]
    names = ("--lines", "--logger", "--follow", "--level")
    assert [settings[name]["value"] for name in names] == [3, ["app"], False, 30]
