"""Which LOGRELAY_* variables a command warns of: its own misspelt ones, none of the other commands'."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from relay.cli import ENVVAR_PREFIX, main
from relay.cli.environment import stray_variables
from relay.common import speedups
from tests.support.realredis import free_port


def context_of(*path: str) -> click.Context:
    """The context click builds for ``logrelay PATH...`` (each level's auto_envvar_prefix as click derives it)."""
    ctx = click.Context(main, info_name="logrelay", auto_envvar_prefix=ENVVAR_PREFIX)
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
        ctx = click.Context(command, info_name=name, parent=ctx)
    return ctx


@pytest.mark.parametrize(
    ("path", "variable", "warning"),
    [
        (
            ("catch",),
            "LOGRELAY_CATCH_REDIS_ULR",
            "LOGRELAY_CATCH_REDIS_ULR is not an option of logrelay catch; did you mean LOGRELAY_CATCH_REDIS_URL?",
        ),
        (
            ("catch",),
            "LOGRELAY_CACTH_STREAM",
            "LOGRELAY_CACTH_STREAM is not an option of logrelay catch; did you mean LOGRELAY_CATCH_STREAM?",
        ),
        (
            ("consume", "file"),
            "LOGRELAY_CONSUME_FILE_OUTPT",
            "LOGRELAY_CONSUME_FILE_OUTPT is not an option of logrelay consume file; "
            "did you mean LOGRELAY_CONSUME_FILE_OUTPUT?",
        ),
        (
            ("consume", "file"),
            "LOGRELAY_CONSUME_FIEL_OUTPUT",
            "LOGRELAY_CONSUME_FIEL_OUTPUT is not an option of logrelay consume file; "
            "did you mean LOGRELAY_CONSUME_FILE_OUTPUT?",
        ),
        (("up",), "LOGRELAY_UP_NOTHING_LIKE_IT", "LOGRELAY_UP_NOTHING_LIKE_IT is not an option of logrelay up"),
        (
            ("catch",),
            "LOGRELAY_CATCH_CONFIG",  # --config is read from one variable for every command
            "LOGRELAY_CATCH_CONFIG is not an option of logrelay catch; did you mean LOGRELAY_CONFIG?",
        ),
    ],
)
def test_a_variable_that_sets_no_option_of_the_command_is_named_with_the_nearest(
    path: tuple[str, ...], variable: str, warning: str
) -> None:
    assert stray_variables(context_of(*path), {variable: "x"}) == [warning]


@pytest.mark.parametrize(
    "variable",
    [
        "LOGRELAY_CATCH_REDIS_URL",  # its own
        "LOGRELAY_CONFIG",
        speedups.SWITCH,
        "LOGRELAY_CONSUME_FILE_OUTPUT",  # another command's
        "LOGRELAY_CONSUME_FILE_OUTPT",  # another command's, misspelt: that command says so
        "LOGRELAY_DEAD_LETTERS_REPLAY_DRY_RUN",
        "LOGRELAY_LB_BIND",  # the bundled HAProxy's
        "OTHER_PROGRAM_SETTING",
    ],
)
def test_the_documented_variables_and_the_other_commands_are_left_alone(variable: str) -> None:
    assert stray_variables(context_of("catch"), {variable: "x"}) == []


def test_status_warns_on_stderr_before_it_asks_redis() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(main, ["status", "--redis-url", url], env={"LOGRELAY_STATUS_JSN": "1"})
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "Warning: LOGRELAY_STATUS_JSN is not an option of logrelay status; did you mean LOGRELAY_STATUS_JSON?"
    )
