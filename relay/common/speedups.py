"""The optional C speedups: one loader, one switch.

Each C extension sits beside its Python reference, named after it with a
leading underscore (``relay/decode/cost_scan.py`` and
``relay/decode/_cost_scan.c``, built as ``relay.decode._cost_scan``).  The
reference is the contract: the C returns exactly what it returns, and tests
and fuzzers (``tests/fuzz``, also under AddressSanitizer and UBSan) compare
the two.  ``pip install`` builds the extensions where a C compiler is
present; elsewhere, and wherever ``LOGRELAY_PURE_PYTHON=1`` is set in the
environment, every module uses its Python path (slower, the same results).

:func:`load` is the only place that imports an extension, and
:data:`IN_USE` records what each module got, for the start-up log line and
``/metrics``.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Final

__all__ = ["EXTENSIONS", "IN_USE", "PURE_PYTHON", "SWITCH", "describe", "load", "load_all", "missing", "summary"]

#: The environment variable that turns every speedup off.
SWITCH: Final = "LOGRELAY_PURE_PYTHON"
#: Whether it was set when this process started.
PURE_PYTHON: Final = bool(os.environ.get(SWITCH))
#: Extension name -> "c" or "python" (what its module uses), as they were loaded.
IN_USE: dict[str, str] = {}
#: Every extension setup.py builds.
EXTENSIONS: Final = (
    "relay.decode._cost_scan",
    "relay.decode._fast_path",
    "relay.decode._syslog",
    "relay.publish._packing",
    "consumers._json_check",
    "consumers._read_replies",
)


def load(name: str) -> ModuleType | None:
    """The C extension ``name`` (``relay.decode._cost_scan``), or None: use the Python path.

    None where the switch is set or the extension was not built (no compiler
    at install time).
    """
    module: ModuleType | None = None
    if not PURE_PYTHON:
        try:
            module = importlib.import_module(name)
        except ImportError:
            module = None
    IN_USE[name] = "c" if module is not None else "python"
    return module


def missing() -> list[str]:
    """The extensions loaded so far whose Python path runs although the switch is not set.

    Not empty where the package was installed without a C compiler: every
    result is the same, but decoding and writing cost several times the CPU
    (docs/decisions.md has the figures), so the processes say so at start.
    """
    if PURE_PYTHON:
        return []
    return sorted(name for name, implementation in IN_USE.items() if implementation == "python")


def describe() -> str:
    """One phrase for the start-up log line: which speedups run."""
    if PURE_PYTHON:
        return f"C speedups off ({SWITCH}=1)"
    built = sorted(name.rpartition(".")[2].lstrip("_") for name, how in IN_USE.items() if how == "c")
    absent = [name.rpartition(".")[2].lstrip("_") for name in missing()]
    text = "C speedups: " + (", ".join(built) if built else "none")
    if absent:
        text += "; not built: " + ", ".join(absent)
    return text


def load_all() -> dict[str, str]:
    """Load every extension not loaded yet; return what each uses ("c" or "python"), by extension name.

    For reports about the whole package (``logrelay --version``, the bench
    suite) rather than one process's modules.
    """
    for name in EXTENSIONS:
        if name not in IN_USE:
            load(name)
    return {name: IN_USE[name] for name in EXTENSIONS}


def summary() -> str:
    """Every extension's path in a few words: ``C paths``, ``python paths`` (none built, or the switch set), or
    ``mixed (python: syslog)``; loads them all first.
    """
    in_use = load_all()
    python = [name.rpartition(".")[2].lstrip("_") for name, how in in_use.items() if how == "python"]
    if not python:
        return "C paths"
    if len(python) == len(in_use):
        return f"python paths ({SWITCH}=1)" if PURE_PYTHON else "python paths (C speedups not built)"
    return f"mixed (python: {', '.join(python)})"


def main() -> int:
    """``python -m relay.common.speedups``: load every extension, say which run; 1 if one was not built."""
    for name in EXTENSIONS:
        load(name)
    print(describe())
    return 1 if missing() else 0


if __name__ == "__main__":
    raise SystemExit(main())
