"""The CPython interpreters pyenv installed, by version: the senders of tests/integration/test_legacy_senders.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def pyenv_root() -> Path:
    """``$PYENV_ROOT``, else what ``pyenv root`` says, else ``~/.pyenv``."""
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        found = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False).stdout.strip()
        if found:
            return Path(found)
    return Path.home() / ".pyenv"


def interpreter(version: str) -> Path | None:
    """The newest pyenv CPython ``version`` (``"3.6"``: ``3.6.15``), or None where it is not installed."""
    found = []
    for path in (pyenv_root() / "versions").glob(f"{version}.*"):
        python = path / "bin" / "python"
        patch = path.name[len(version) + 1 :]
        if patch.isdigit() and python.exists():
            found.append((int(patch), python))
    return max(found)[1] if found else None
