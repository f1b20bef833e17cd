"""The wheel the Dockerfile's builder makes carries every C extension, and so does a wheel built from the sdist.

No Docker engine runs here: the files the builder stage COPYs (read from the
Dockerfile) are copied into a temporary directory, built with ``pip wheel
--no-deps`` as the builder builds them, installed into a fresh venv with
``--no-index`` (its dependencies from this interpreter's site-packages:
nothing is fetched but the build backend), and ``python -m
relay.common.speedups`` runs there, outside any source tree, as the image runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from relay.common.speedups import EXTENSIONS, SWITCH
from tests.support.compose import ROOT
from tests.support.dockerfile import DOCKERFILE, stages

pytestmark = pytest.mark.integration

#: What a build leaves in a working tree: never part of what the builder gets.
BUILT = shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info", "build")


def run(*args: str | Path, cwd: Path) -> str:
    """A command as a user runs it: no PYTHONPATH (it would put the worktree's ``relay`` first), speedups on."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", SWITCH)}
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def builder_context(destination: Path) -> Path:
    """The files the Dockerfile's builder COPYs from the build context, copied to ``destination``."""
    destination.mkdir()
    builder = stages(DOCKERFILE.read_text(encoding="utf-8"))[0]
    for keyword, args in builder.instructions:
        words = args.split()
        if keyword != "COPY" or any(word.startswith("--from=") for word in words):
            continue
        for pattern in words[:-1]:
            for source in ROOT.glob(pattern.removeprefix("./")):
                target = destination / source.relative_to(ROOT)
                if source.is_dir():
                    shutil.copytree(source, target, ignore=BUILT)
                else:
                    shutil.copy2(source, target)
    return destination


def build_wheel(source: Path | str, wheels: Path, cwd: Path) -> Path:
    """``pip wheel --no-deps`` of ``source`` (a directory or an sdist), as the builder runs it; the wheel."""
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", wheels, source, cwd=cwd)
    (wheel,) = wheels.glob("logrelay-*.whl")
    return wheel


def extension_files(wheel: Path) -> set[str]:
    """The extensions in ``wheel``, by module name (``relay.decode._fast_path``)."""
    with zipfile.ZipFile(wheel) as archive:
        names = [name for name in archive.namelist() if name.endswith(".so")]
    return {name.split(".", 1)[0].replace("/", ".") for name in names}


def test_the_builders_wheel_installed_alone_runs_every_c_extension(tmp_path: Path) -> None:
    context = builder_context(tmp_path / "src")
    assert (context / "setup.py").exists()
    assert not list(context.rglob("*.so"))
    wheel = build_wheel(".", tmp_path / "wheels", cwd=context)
    assert extension_files(wheel) == set(EXTENSIONS)

    # The dependencies (redis, orjson, ...) come from this interpreter's site-packages; logrelay from the wheel.
    environment = tmp_path / "venv"
    venv.create(environment, system_site_packages=True, with_pip=True)
    python = environment / "bin" / "python"
    run(python, "-m", "pip", "install", "--no-index", "--no-deps", wheel, cwd=tmp_path)
    where = run(python, "-c", "import relay; print(relay.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(environment)
    report = run(python, "-m", "relay.common.speedups", cwd=tmp_path)
    built = report.strip().removeprefix("C speedups: ").split(", ")
    assert sorted(built) == sorted(name.rpartition(".")[2].lstrip("_") for name in EXTENSIONS)


def test_a_wheel_built_from_the_sdist_carries_every_c_extension(tmp_path: Path) -> None:
    context = builder_context(tmp_path / "src")
    # The sdist as `python -m build --sdist` makes it: setuptools' PEP 517 hook, in the copied tree.
    made = run(sys.executable, "-c", "import setuptools.build_meta as b; print(b.build_sdist('../sdist'))", cwd=context)
    sdist = tmp_path / "sdist" / made.strip().splitlines()[-1]
    wheel = build_wheel(sdist, tmp_path / "wheels", cwd=tmp_path)
    assert extension_files(wheel) == set(EXTENSIONS)
