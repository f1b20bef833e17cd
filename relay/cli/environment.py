"""``LOGRELAY_*`` variables that set nothing: a warning at start, naming the nearest option's variable.

Every option can come from ``LOGRELAY_<COMMAND>_<OPTION>`` (click's
``auto_envvar_prefix``); a misspelt one is silently ignored by click and the
default applies instead, which looks like the setting took effect.  So each
command checks, at start, the variables in its own scope and in no command's
scope, and says which of them match none of its options.  Variables of the
other commands (``LOGRELAY_CONSUME_FILE_OUTPUT`` while running ``catch``: a
shared environment for several commands is normal) and the documented ones
that are not options (:data:`KNOWN_VARIABLES`, :data:`FOREIGN_PREFIXES`) are
left alone.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Final

import click

from relay.cli.config_file import CONFIG_ENVVAR, command_path, leaf_commands
from relay.common import speedups

__all__ = ["FOREIGN_PREFIXES", "KNOWN_VARIABLES", "stray_variables", "warn_stray_variables"]

#: Documented variables that are not options of a command.
KNOWN_VARIABLES: Final = frozenset({CONFIG_ENVVAR, speedups.SWITCH})
#: Prefixes that belong to others: the bundled HAProxy configuration's (deploy/haproxy.cfg).
FOREIGN_PREFIXES: Final = ("LOGRELAY_LB_",)


def _prefix(root_prefix: str, path: tuple[str, ...]) -> str:
    """The variable prefix click gives the command at ``path``: ``LOGRELAY_DEAD_LETTERS_REPLAY``."""
    return "_".join([root_prefix, *(name.upper().replace("-", "_") for name in path)])


def option_variables(command: click.Command, prefix: str) -> Iterator[str]:
    """The variables ``command``'s options are read from, with ``prefix`` as its auto_envvar_prefix."""
    for param in command.params:
        if not isinstance(param, click.Option) or param.name is None:
            continue
        if isinstance(param.envvar, str):
            yield param.envvar
        elif param.envvar:
            yield from param.envvar
        elif param.allow_from_autoenv and param.expose_value:
            yield f"{prefix}_{param.name.upper()}"


def stray_variables(ctx: click.Context, environ: Mapping[str, str]) -> list[str]:
    """One warning per ``LOGRELAY_*`` variable of ``environ`` that ``ctx``'s command should take and does not.

    A variable is this command's to check when it starts with the command's
    prefix, or with the root prefix and no other command's (or group's):
    ``LOGRELAY_CATCH_REDIS_ULR`` and ``LOGRELAY_CACTH_STREAM`` for ``catch``,
    not ``LOGRELAY_CONSUME_FILE_OUTPUT``.
    """
    root = ctx.find_root()
    root_prefix = root.auto_envvar_prefix
    if not root_prefix or not isinstance(root.command, click.Group):
        return []
    path = command_path(ctx)
    own_prefix = _prefix(root_prefix, path)
    own = set(option_variables(ctx.command, own_prefix))
    everyone: set[str] = set(KNOWN_VARIABLES)
    others: set[str] = set()
    for other_path, command in leaf_commands(root.command):
        other_prefix = _prefix(root_prefix, other_path)
        everyone.update(option_variables(command, other_prefix))
        # The other commands' prefixes, and their groups' that are not this command's own groups.
        for depth in range(1, len(other_path) + 1):
            if other_path[:depth] != path[:depth]:
                others.add(_prefix(root_prefix, other_path[:depth]) + "_")
    name = " ".join(["logrelay", *path])  # as the docs name it, not as invoked (python -m relay)
    warnings = []
    for variable in sorted(environ):
        if not variable.startswith(root_prefix + "_") or variable in own or variable in KNOWN_VARIABLES:
            continue
        if variable.startswith(FOREIGN_PREFIXES):
            continue
        if not variable.startswith(own_prefix + "_") and variable.startswith(tuple(others)):
            continue  # another command's: checked when that one runs
        hint = _nearest(variable, own_prefix, own, everyone)
        warnings.append(f"{variable} is not an option of {name}{hint}")
    return warnings


def _nearest(variable: str, own_prefix: str, own: set[str], everyone: set[str]) -> str:
    """``; did you mean NAME?`` for the variable ``variable`` most likely meant, or "" if none is close.

    Within the command's prefix only the option part is compared (the
    shared prefix would make any two names look alike); a misspelt prefix
    is compared whole, with every command's variables and the documented ones.
    """
    if variable.startswith(own_prefix + "_"):
        options = {name.removeprefix(own_prefix + "_"): name for name in own if name.startswith(own_prefix + "_")}
        close = difflib.get_close_matches(variable.removeprefix(own_prefix + "_"), sorted(options), n=1, cutoff=0.6)
        close = [options[name] for name in close]
        if not close:  # LOGRELAY_CATCH_CONFIG: read as LOGRELAY_CONFIG, outside the prefix
            close = difflib.get_close_matches(variable, sorted(own - set(options.values())), n=1, cutoff=0.8)
    else:
        close = difflib.get_close_matches(variable, sorted(everyone), n=1, cutoff=0.8)
    return f"; did you mean {close[0]}?" if close else ""


def warn_stray_variables(say: Callable[[str], None]) -> None:
    """Pass ``say`` each warning of :func:`stray_variables` for the running command and this process's environment."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return
    for warning in stray_variables(ctx, os.environ):
        say(warning)
