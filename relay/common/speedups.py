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

__all__ = ["IN_USE", "PURE_PYTHON", "SWITCH", "load"]

#: The environment variable that turns every speedup off.
SWITCH: Final = "LOGRELAY_PURE_PYTHON"
#: Whether it was set when this process started.
PURE_PYTHON: Final = bool(os.environ.get(SWITCH))
#: Extension name -> "c" or "python" (what its module uses), as they were loaded.
IN_USE: dict[str, str] = {}


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
