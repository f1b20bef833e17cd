"""The repository's ``Dockerfile`` read as its stages and instructions: enough of the format to check it.

Comments are dropped and ``\\`` continuations joined; each ``FROM`` starts a
:class:`Stage`.  Shell-form ``RUN`` lines are split into their commands
(``&&``, ``||``, ``;``) with :func:`shlex.split`.  No Docker engine is needed.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

from tests.support.compose import ROOT

__all__ = [
    "DOCKERFILE",
    "Stage",
    "exec_form",
    "instructions",
    "pip_targets",
    "run_commands",
    "stages",
]

DOCKERFILE = ROOT / "Dockerfile"

# pip options that take a value, so that value is no install target.
_PIP_VALUE_OPTIONS = frozenset(
    {
        "-r",
        "--requirement",
        "-c",
        "--constraint",
        "-i",
        "--index-url",
        "--extra-index-url",
        "-f",
        "--find-links",
        "-w",
        "--wheel-dir",
        "-t",
        "--target",
        "--prefix",
        "--root",
        "--python-version",
        "--platform",
        "--progress-bar",
    }
)


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, with comments dropped and continuations joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        found.append((keyword.upper(), args.strip()))
        pending = ""
    return found


@dataclass
class Stage:
    """One ``FROM`` and the instructions up to the next."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        """The arguments of each ``keyword`` instruction of the stage, in order."""
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.args(keyword)
        return found[-1] if found else None


def stages(text: str) -> list[Stage]:
    """The Dockerfile's stages in order (``FROM image [AS name]``); instructions before the first are dropped."""
    found: list[Stage] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            words = [word for word in args.split() if not word.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(words[0] if words else "", name))
        elif found:
            found[-1].instructions.append((keyword, args))
    return found


def exec_form(args: str) -> list[str] | None:
    """The JSON array of an exec-form ``ENTRYPOINT``/``CMD``, or None for shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def run_commands(run_args: str) -> list[list[str]]:
    """The commands of one shell-form ``RUN``, each as its words (``--mount=...`` options dropped)."""
    text = " ".join(word for word in run_args.split(" ") if not word.startswith("--mount="))
    return [words for segment in re.split(r"&&|\|\||;", text) if (words := shlex.split(segment))]


def pip_targets(command: list[str], subcommand: str) -> tuple[list[str], list[str]] | None:
    """``(options, targets)`` of a ``pip SUBCOMMAND`` command (``.`` for ``.[extra]``); None if it is not one."""
    for start in range(len(command) - 1):
        if command[start].rsplit("/", 1)[-1] in ("pip", "pip3") and command[start + 1] == subcommand:
            break
    else:
        return None
    options: list[str] = []
    targets: list[str] = []
    takes_value = False
    for word in command[start + 2 :]:
        if takes_value:
            options[-1] += "=" + word
            takes_value = False
        elif word.startswith("-"):
            options.append(word)
            takes_value = word in _PIP_VALUE_OPTIONS
        else:
            targets.append("." if re.fullmatch(r"\./?(\[.*\])?", word) else word)
    return options, targets
