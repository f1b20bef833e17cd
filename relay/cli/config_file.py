"""``--config FILE``: option values from a TOML file, below the command line and the environment.

The file's keys are the options' long names without the dashes in front
(``redis-url``, ``max-frame-bytes``); a flag takes ``true`` or ``false``, a
repeatable option a list (or one value).  Keys at the top level apply to every command that
takes that option; a table applies to one command (``[catch]``, ``[up]``,
``[consume.file]``, ``[dead-letters.replay]``) or to every command of a group
(``[consume]``, ``[dead-letters]``); the more specific one wins::

    redis-url = "rediss://logrelay:secret@redis.internal:6380/0"

    [catch]
    listen = "0.0.0.0:9020"
    max-frame-bytes = "1MiB"

    [consume.file]
    output = "/var/log/central.log"
    rotate-interval = "daily"

Precedence is click's own: command line > environment (``LOGRELAY_...``) >
file > default; the file's values go through the same types and checks as the
command line's.  The whole file is checked whichever command reads it: a key no
command takes, or one that its table's command does not take, is an error
naming the key, the table and the file, with the nearest option there is.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Any, Final

import click

__all__ = ["CONFIG_ENVVAR", "ConfigFile", "command_path", "install_config_option"]

#: One variable for every command (an explicit ``LOGRELAY_<COMMAND>_CONFIG`` is not needed).
CONFIG_ENVVAR: Final = "LOGRELAY_CONFIG"
#: Where a loaded file is kept on the context, for ``logrelay config show``.
META_KEY: Final = "logrelay.config"


def option_keys(command: click.Command) -> dict[str, str]:
    """The file keys a command takes (``max-frame-bytes``), each mapped to its parameter's name."""
    keys: dict[str, str] = {}
    for param in command.params:
        if not isinstance(param, click.Option) or param.name is None or param.name == "config":
            continue
        if param.is_eager and not param.expose_value:
            continue  # --help, --version
        if not param.allow_from_autoenv:
            continue  # what to act on now (dead-letters purge --all): the command line's alone
        for opt in param.opts:
            if opt.startswith("--"):
                keys[opt[2:]] = param.name
    return keys


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command below ``group``, with its path of names (``("consume", "file")``)."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name), command


def command_path(ctx: click.Context) -> tuple[str, ...]:
    """The names leading from the root command to ``ctx``'s command (without the root's)."""
    names: list[str] = []
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return tuple(reversed(names))


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A loaded configuration file, checked against the commands of one CLI."""

    path: Path
    data: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> ConfigFile:
        """Read and parse ``path``; a ValueError with one line if it cannot be."""
        try:
            with path.open("rb") as file:
                data = tomllib.load(file)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return cls(path, data)

    def check(self, root: click.Group) -> None:
        """Raise ValueError naming the first key or table that no command of ``root`` takes."""
        commands = dict(leaf_commands(root))
        self._check_table(self.data, (), commands)

    def _check_table(
        self, table: dict[str, Any], prefix: tuple[str, ...], commands: dict[tuple[str, ...], click.Command]
    ) -> None:
        below = {path: command for path, command in commands.items() if path[: len(prefix)] == prefix}
        if not below:
            where = f"[{'.'.join(prefix)}]"
            names = sorted({".".join(path[: len(prefix)]) for path in commands if len(path) >= len(prefix)})
            raise ValueError(f"unknown table {where} in {self.path}{_nearest('.'.join(prefix), names, '[{}]')}")
        taken: dict[str, str] = {}
        for command in below.values():
            taken.update(option_keys(command))
        for key, value in table.items():
            if isinstance(value, dict):
                self._check_table(value, (*prefix, key), commands)
            elif key not in taken:
                where = f"[{'.'.join(prefix)}]" if prefix else "the top level"
                what = " or ".join(" ".join(path) for path in below) if prefix else "any command"
                hint = _nearest(key, list(taken), "'{}'")
                raise ValueError(f"unknown key '{key}' at {where} of {self.path}: not an option of {what}{hint}")

    def values_for(self, path: tuple[str, ...], command: click.Command) -> dict[str, tuple[Any, str]]:
        """The file's values for the command at ``path``: parameter name → (value, the table it came from).

        Each value as the command line would give it (text; a list of texts
        for a repeatable option), so that it goes through the option's own
        type and checks.  Raises ValueError for a value of the wrong shape (a
        list for a single value, a table in a list).
        """
        keys = option_keys(command)
        params = {param.name: param for param in command.params if isinstance(param, click.Option)}
        found: dict[str, tuple[Any, str]] = {}
        table: Any = self.data
        for depth in range(len(path) + 1):
            if not isinstance(table, dict):
                break
            where = f"[{'.'.join(path[:depth])}]" if depth else "top level"
            for key, value in table.items():
                if not isinstance(value, dict) and key in keys:
                    found[keys[key]] = (self._as_given(params[keys[key]], key, value, where), where)
            if depth < len(path):
                table = table.get(path[depth])
        return found

    def _as_given(self, param: click.Option, key: str, value: Any, where: str) -> str | list[str]:
        """A file value as the command line would give it; ValueError naming the key if its shape is wrong."""
        if param.multiple:
            if not isinstance(value, list):
                value = [value]
            return [self._text(key, item, where) for item in value]
        return self._text(key, value, where)

    def _text(self, key: str, value: Any, where: str) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, date | time):  # a TOML date or time: as written
            return value.isoformat()
        kind = "a list" if isinstance(value, list) else "a table" if isinstance(value, dict) else type(value).__name__
        raise ValueError(f"key '{key}' at {where} of {self.path} takes one value, not {kind}")


def _nearest(word: str, choices: list[str], shape: str) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {shape.format(close[0])}?)" if close else ""


def _apply_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """The eager ``--config`` callback: load, check and hand the values to click as its default map."""
    if not value:
        return
    try:
        config = ConfigFile.load(Path(value))
        root = ctx.find_root().command
        if isinstance(root, click.Group):
            config.check(root)
        values = config.values_for(command_path(ctx), ctx.command)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc
    ctx.default_map = {**(ctx.default_map or {}), **{name: value for name, (value, _) in values.items()}}
    ctx.meta[META_KEY] = (config, values)


def config_option() -> click.Option:
    return click.Option(
        ["--config"],
        type=click.Path(dir_okay=False),
        envvar=CONFIG_ENVVAR,
        is_eager=True,  # before every other option, so that they find the file's values
        expose_value=False,
        callback=_apply_config,
        help=f"TOML file of option values (below the command line and the environment; also ${CONFIG_ENVVAR}).",
    )


def install_config_option(root: click.Group) -> None:
    """Give every command below ``root`` the ``--config`` option (once)."""
    for path, command in leaf_commands(root):
        if path[0] == "config":
            continue  # ``config show`` passes it on to the command it shows
        if not any(param.name == "config" for param in command.params):
            command.params.insert(0, config_option())
