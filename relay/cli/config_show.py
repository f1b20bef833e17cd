"""``logrelay config show COMMAND [OPTIONS]``: the settings a command would run with, and where each came from.

It resolves the options exactly as the command would (command line >
environment > ``--config`` file > default, through the same types and
checks) without running anything; a required option left unset shows as
missing instead of failing.  Secrets are masked: passwords in URLs and --http-basic-auth's.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import click
import orjson

from relay import __version__
from relay.cli.config_file import META_KEY, ConfigFile, command_path, leaf_commands
from relay.common import speedups
from relay.common.redis_client import mask_url

__all__ = ["config", "effective_settings", "log_effective_settings"]

log = logging.getLogger("logrelay.cli")

SOURCE_NAMES = {
    click.core.ParameterSource.COMMANDLINE: "command line",
    click.core.ParameterSource.ENVIRONMENT: "environment",
    click.core.ParameterSource.DEFAULT_MAP: "config file",
    click.core.ParameterSource.DEFAULT: "default",
}


#: Options whose value holds a password (USER:PASSWORD): shown as USER:***.
SECRET_OPTIONS = frozenset({"http_basic_auth"})


def mask_credentials(text: str) -> str:
    """``USER:PASSWORD`` as ``USER:***``."""
    user, sep, _ = text.partition(":")
    return f"{user}:***" if sep else "***"


def _plain(value: Any) -> Any:
    """A setting's value as JSON can show it."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return mask_url(str(value))


def effective_settings(ctx: click.Context) -> str:
    """The running command's settings as one line, ``--name=value`` each, secrets masked as :func:`resolve` masks.

    Options left at no value (``--listen-syslog`` unset) are left out; a
    repeatable option shows its values comma-separated.
    """
    shown = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name is None or param.name == "config":
            continue
        if param.is_eager and not param.expose_value:
            continue
        value = ctx.params.get(param.name)
        if value is None or value == ():
            continue
        if param.name in SECRET_OPTIONS:
            value = mask_credentials(str(value))
        plain = _plain(value)
        text = ",".join(str(item) for item in plain) if isinstance(plain, list) else str(plain)
        name = next((opt for opt in param.opts if opt.startswith("--")), param.opts[0])
        shown.append(f"{name}={text}")
    return " ".join(shown)


def log_effective_settings() -> None:
    """Log, once at start, the running command's settings and which code paths (C or Python) it runs."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return
    name = " ".join(["logrelay", *command_path(ctx)])
    log.info("%s %s, %s: %s; %s", name, __version__, speedups.summary(), effective_settings(ctx), speedups.describe())


def _find_command(root: click.Group, words: list[str]) -> tuple[list[tuple[str, click.Command]], list[str]]:
    """Walk ``words`` down from ``root``: the commands named, and the words left (the leaf's options)."""
    chain: list[tuple[str, click.Command]] = []
    command: click.Command = root
    rest = list(words)
    # ``config show --config FILE catch`` as well as ``config show catch --config FILE``.
    moved: list[str] = []
    while rest and (rest[0] == "--config" or rest[0].startswith("--config=")):
        moved += rest[:2] if rest[0] == "--config" else rest[:1]
        del rest[: len(moved)]
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        name = rest.pop(0)
        command = command.commands[name]
        chain.append((name, command))
    if not chain or isinstance(command, click.Group):
        names = ", ".join(" ".join(path) for path, _ in leaf_commands(root) if path[0] != "config")
        raise click.UsageError(f"name the command whose settings to show: {names}")
    return chain, moved + rest


def resolve(root_ctx: click.Context, words: list[str]) -> dict[str, Any]:
    """The effective settings of the command named by ``words`` (with its options), and their sources."""
    root = root_ctx.command
    assert isinstance(root, click.Group)
    chain, rest = _find_command(root, words)
    parent = click.Context(root, info_name=root_ctx.info_name, auto_envvar_prefix=root_ctx.auto_envvar_prefix)
    for name, group in chain[:-1]:
        parent = click.Context(group, info_name=name, parent=parent)
    name, leaf = chain[-1]
    # The same options, but a required one left unset is shown, not refused.
    relaxed = copy.copy(leaf)
    relaxed.params = [copy.copy(param) for param in leaf.params]
    for param in relaxed.params:
        param.required = False
    ctx = relaxed.make_context(name, rest, parent=parent)
    config: ConfigFile | None = None
    from_file: dict[str, tuple[Any, str]] = {}
    if META_KEY in ctx.meta:
        config, from_file = ctx.meta[META_KEY]
    settings: dict[str, dict[str, Any]] = {}
    for param in leaf.params:
        if not isinstance(param, click.Option) or param.name is None or param.name == "config":
            continue
        if param.is_eager and not param.expose_value:
            continue
        source = ctx.get_parameter_source(param.name)
        where = SOURCE_NAMES.get(source, "default") if source is not None else "default"
        detail = ""
        if where == "environment":
            detail = param.envvar if isinstance(param.envvar, str) else f"{ctx.auto_envvar_prefix}_{param.name.upper()}"
        elif where == "config file" and config is not None:
            detail = f"{config.path}, {from_file[param.name][1]}"
        value = ctx.params.get(param.name)
        if param.name in SECRET_OPTIONS and value:
            value = mask_credentials(str(value))
        entry: dict[str, Any] = {"value": _plain(value), "source": where}
        if detail:
            entry["from"] = detail
        if param.required and value in (None, ()):
            entry["source"] = "missing (required)"
        settings[param.opts[-1] if param.opts[-1].startswith("--") else param.opts[0]] = entry
    return {
        "command": " ".join(name for name, _ in chain),
        "config_file": str(config.path) if config else None,
        "settings": settings,
    }


@click.group("config")
def config() -> None:
    """Inspect the settings a command runs with."""


@config.command("show", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def show(ctx: click.Context, as_json: bool, command: tuple[str, ...]) -> None:
    """Print the effective settings of COMMAND (with the options given after it) and where each came from.

    \b
    logrelay config show catch
    logrelay config show consume file --config /etc/logrelay.toml --output /var/log/central.log
    """
    report = resolve(ctx.find_root(), list(command))
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    source = f" (config file {report['config_file']})" if report["config_file"] else ""
    click.echo(f"# logrelay {report['command']}{source}")
    rows = []
    for name, entry in report["settings"].items():
        value = entry["value"]
        shown = "(none)" if value is None else orjson.dumps(value).decode() if isinstance(value, list) else str(value)
        rows.append((name, shown, entry["source"] + (f" ({entry['from']})" if "from" in entry else "")))
    name_width = max(len(name) for name, _, _ in rows)
    value_width = min(max(len(shown) for _, shown, _ in rows), 48)
    for name, shown, where in rows:
        click.echo(f"{name:<{name_width}}  {shown:<{value_width}}  {where}")
