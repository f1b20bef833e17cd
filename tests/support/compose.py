"""Reading compose files as ``docker compose`` would, without Docker: for tests/test_compose.py and the
integration tests that run a compose topology as local processes.

:func:`load_compose` reads one file (PyYAML: anchors and ``<<`` merge keys as compose reads them),
:func:`merge_compose` lays an override file over it (``-f compose.yaml -f compose.sentinel.yaml``),
:func:`service_env`/:func:`service_command` read a service the way compose hands it to the container, and
:func:`option_arguments` turns a service's ``LOGRELAY_*`` variables into the ``logrelay`` options they set.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import yaml

from relay.cli import ENVVAR_PREFIX, main

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
SENTINEL_COMPOSE_FILE = ROOT / "compose.sentinel.yaml"

Compose = dict[str, Any]
Service = dict[str, Any]

#: Keys whose list value an override replaces whole (compose merges other lists: ports, volumes, ...).
_REPLACED_LISTS = frozenset({"command", "entrypoint", "test"})


def load_compose(*paths: Path) -> Compose:
    """The compose model of ``paths`` (``compose.yaml`` alone by default), each file over the one before."""
    merged: Compose = {}
    for path in paths or (COMPOSE_FILE,):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert isinstance(data, dict), f"{path.name} is not a mapping"
        merged = merge_compose(merged, data)
    return merged


def merge_compose(base: Compose, override: Compose) -> Compose:
    """``override`` laid over ``base`` as ``docker compose -f base -f override`` does, for the keys used here.

    Mappings merge key by key, recursively (services by name, then each service's keys; ``depends_on``,
    ``healthcheck``, top-level ``volumes``); ``environment`` merges by variable, whichever syntax
    (list or mapping) each side uses; a scalar from the override replaces the base's; so does a list
    under ``command``, ``entrypoint`` or ``healthcheck.test``.  Compose merges the other lists
    (``ports``, ``volumes``, ``expose``, ...) by rules of their own, which this does not implement: an
    override that sets one on a service that has it already is refused (``ValueError``).  ``x-*``
    extension keys merge like any other.  Neither argument is changed.
    """
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if key == "environment" and old is not None:
            merged[key] = {**service_env({key: old}), **service_env({key: value})}
        elif isinstance(old, dict) and isinstance(value, dict):
            merged[key] = merge_compose(old, value)
        elif isinstance(old, list) and key not in _REPLACED_LISTS:
            raise ValueError(f"merging the list under {key!r} is not implemented: compose appends or merges it")
        else:
            merged[key] = value
    return merged


def services(compose: Compose) -> dict[str, Service]:
    found = compose.get("services")
    assert isinstance(found, dict), "the compose file has no services mapping"
    assert found, "the compose file has no services"
    return found


def service_env(service: Service) -> dict[str, str | None]:
    """``environment`` as compose reads it: a mapping or a list of ``KEY=VALUE``."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {key: (value if sep else None) for key, sep, value in pairs}
    # Compose turns numbers and booleans into strings; None means "from the host".
    return {key: (None if value is None else _compose_scalar(value)) for key, value in env.items()}


def _compose_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def service_command(service: Service) -> list[str] | None:
    command = service.get("command")
    if command is None:
        return None
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def option_envvar(command: str, param: click.Parameter) -> str:
    """The variable click reads ``param`` of ``command`` (``consume_file``) from: ``LOGRELAY_<COMMAND>_<NAME>``."""
    assert param.name is not None
    return f"{ENVVAR_PREFIX}_{command.upper()}_{param.name.upper()}"


def resolve_command(command_line: list[str]) -> tuple[list[str], click.Command | None, list[str]]:
    """Walk ``command_line`` through the CLI's groups: (path, command, remaining arguments)."""
    path: list[str] = []
    command: click.Command = main
    args = list(command_line)
    while isinstance(command, click.Group) and args:
        name = args.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            return [*path, name], None, args
        path.append(name)
        command = sub
    return path, command, args


def option_arguments(command_line: list[str], env: Mapping[str, str | None]) -> list[str]:
    """The ``logrelay <command_line>`` options that ``env``'s ``LOGRELAY_*`` variables stand for.

    ``LOGRELAY_CATCH_WAIT_REPLICAS=1`` gives ``--wait-replicas 1``; a flag's ``true`` gives the flag,
    ``false`` its ``--no-`` form.  ``ValueError`` for a variable that matches no option (tests/test_compose.py
    says which, with the other problems of a service's environment).
    """
    path, command, _ = resolve_command(command_line)
    if command is None or isinstance(command, click.Group):
        raise ValueError(f"`logrelay {' '.join(command_line)}` is not a command")
    options = {option_envvar("_".join(path), p): p for p in command.params if isinstance(p, click.Option)}
    arguments: list[str] = []
    for key, value in env.items():
        if not key.startswith(f"{ENVVAR_PREFIX}_"):
            continue
        option = options.get(key)
        if option is None or value is None:
            raise ValueError(f"{key}={value!r} sets no option of `logrelay {' '.join(path)}`")
        long_name = max(option.opts, key=len)
        if not option.is_flag:
            arguments += [long_name, value]
        elif value.lower() in ("1", "true", "yes", "on"):
            arguments.append(long_name)
        elif option.secondary_opts:
            arguments.append(max(option.secondary_opts, key=len))
    return arguments
