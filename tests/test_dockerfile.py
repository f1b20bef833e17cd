"""Static checks of the ``Dockerfile``: a builder stage compiles the wheels and fails without a C extension,
the image installs only those wheels (no compiler) and runs ``logrelay`` unprivileged.

No Docker engine runs here: the file is read stage by stage
(:mod:`tests.support.dockerfile`).  tests/integration/test_image_wheel.py
builds the same wheel locally and checks that it carries the C.  Each check
returns a list of problems; the negative tests feed it a broken copy to show
that it would notice.
"""

from __future__ import annotations

import pytest

from relay.cli import main
from tests.support.compose import ROOT
from tests.support.dockerfile import DOCKERFILE, Stage, exec_form, pip_targets, run_commands, stages

SPEEDUPS_CHECK = ["python", "-m", "relay.common.speedups"]
COMPILERS = frozenset({"gcc", "g++", "cc", "clang", "build-essential"})
#: What the builder must copy besides the packages: setup.py declares the C extensions.
BUILD_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in")


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def apt_installs(stage: Stage) -> set[str]:
    """The packages the stage's RUN lines ``apt-get install``."""
    packages: set[str] = set()
    for run in stage.args("RUN"):
        for command in run_commands(run):
            if command[:2] in (["apt-get", "install"], ["apt", "install"]):
                packages.update(word for word in command[2:] if not word.startswith("-"))
    return packages


def copied_sources(stage: Stage) -> list[str]:
    """The build-context paths the stage's COPY/ADD lines copy (not those copied from another stage)."""
    sources: list[str] = []
    for keyword, args in stage.instructions:
        words = args.split()
        if keyword in ("COPY", "ADD") and not any(word.startswith("--from=") for word in words):
            sources.extend(word.removeprefix("./").rstrip("/").rstrip("*") for word in words[:-1])
    return sources


def speedups_checked_outside_the_source(stage: Stage) -> str | None:
    """None if a RUN of the stage runs the speedups check after a ``cd`` away from WORKDIR; else what is wrong."""
    workdir = stage.last("WORKDIR")
    for run in stage.args("RUN"):
        commands = run_commands(run)
        if SPEEDUPS_CHECK not in commands:
            continue
        before = commands[: commands.index(SPEEDUPS_CHECK)]
        if workdir in (None, "/") or any(c[0] == "cd" and c[1:] != [workdir] for c in before):
            return None
        return (
            f"stage {stage.name or stage.base}: the speedups check runs inside {workdir}, where `relay` is the "
            "source tree, not the installed wheel: cd / first"
        )
    return f"stage {stage.name or stage.base}: no RUN python -m relay.common.speedups (fails on a missing C extension)"


def builder_problems(builder: Stage, root_files: list[str]) -> tuple[list[str], str | None]:
    """What is wrong with the builder stage, and the directory its wheels go to (None if none)."""
    problems: list[str] = []
    if not builder.base.startswith("python:3.11-slim"):
        problems.append(f"the builder's base image is {builder.base!r}, not python:3.11-slim")
    if not builder.name:
        problems.append("the builder stage has no name (FROM ... AS builder) for the image to copy from")
    missing = {"gcc", "libc6-dev"} - apt_installs(builder)
    if missing:
        problems.append(f"the builder installs no C compiler and headers: {sorted(missing)} missing")
    wheel_dir = None
    for run in builder.args("RUN"):
        for command in run_commands(run):
            parsed = pip_targets(command, "wheel")
            if parsed is not None and "." in parsed[1]:
                wheel_dir = next((o.split("=", 1)[1] for o in parsed[0] if o.startswith(("-w=", "--wheel-dir="))), None)
    if wheel_dir is None:
        problems.append("the builder runs no `pip wheel --wheel-dir DIR .` of the project")
    problem = speedups_checked_outside_the_source(builder)
    if problem:
        problems.append(problem)
    copied = copied_sources(builder)
    for path in BUILD_FILES:
        if path not in copied:
            problems.append(f"{path} is not copied into the builder")
    for source in root_files:
        if not any(source == path or source.startswith(f"{path}/") for path in copied):
            problems.append(f"{source} is not copied into the builder: its extension would not build")
    return problems, wheel_dir


def final_problems(final: Stage, builder_name: str | None, wheel_dir: str | None) -> list[str]:
    problems: list[str] = []
    if not final.base.startswith("python:3.11-slim"):
        problems.append(f"the image's base is {final.base!r}, not python:3.11-slim (not the builder: no compiler)")
    from_builder = [
        args.split() for kw, args in final.instructions if kw == "COPY" and f"--from={builder_name}" in args.split()
    ]
    if wheel_dir is None or not any(
        wheel_dir.rstrip("/") in [w.rstrip("/") for w in words[:-1]] for words in from_builder
    ):
        problems.append(f"the image does not copy the wheels ({wheel_dir}) from the builder")
    installs = [
        parsed
        for run in final.args("RUN")
        for command in run_commands(run)
        if (parsed := pip_targets(command, "install")) is not None
    ]
    if not any("logrelay" in targets for _, targets in installs):
        problems.append("the image runs no pip install of logrelay (from the builder's wheels)")
    for options, targets in installs:
        if "--no-index" not in options or f"--find-links={wheel_dir}" not in options:
            problems.append(
                f"pip install {' '.join(targets)}: not --no-index --find-links {wheel_dir} (the wheels only)"
            )
        if "." in targets:
            problems.append("the image installs the source tree (pip install .): that needs a compiler")
    compilers = apt_installs(final) & (COMPILERS | {"libc6-dev"})
    if compilers:
        problems.append(f"a compiler in the final image: {sorted(compilers)}")
    if any(pip_targets(c, "wheel") for run in final.args("RUN") for c in run_commands(run)):
        problems.append("the image builds wheels itself: that is the builder's work")
    problem = speedups_checked_outside_the_source(final)
    if problem:
        problems.append(problem)

    entrypoint = exec_form(final.last("ENTRYPOINT") or "")
    if entrypoint != ["logrelay"]:
        problems.append(f'ENTRYPOINT is {final.last("ENTRYPOINT")!r}, not exec-form ["logrelay"]')
    cmd = exec_form(final.last("CMD") or "")
    if not cmd or cmd[0] not in main.commands:
        problems.append(f"CMD {final.last('CMD')!r} does not name a logrelay subcommand")
    exposed = " ".join(final.args("EXPOSE")).split()
    if "9020" not in [port.split("/")[0] for port in exposed]:
        problems.append(f"EXPOSE does not include 9020: {exposed}")
    if not any("/var/log/logrelay" in run and "chown" in run for run in final.args("RUN")):
        problems.append("/var/log/logrelay (the consumer's volume) is not made the image user's")

    keywords = [kw for kw, _ in final.instructions]
    users = [i for i, kw in enumerate(keywords) if kw == "USER"]
    installs_at = [i for i, (kw, args) in enumerate(final.instructions) if kw == "RUN" and "pip install" in args]
    user = final.last("USER")
    if user is None or user.split(":")[0] in ("root", "0"):
        problems.append("the image runs as root: add a USER")
    elif installs_at and users[-1] < installs_at[-1]:
        problems.append("USER comes before pip install: the install would run unprivileged")
    return problems


def c_sources() -> list[str]:
    """Every C source and header of the extensions, relative to the repository (what the builder needs)."""
    found = [*ROOT.glob("relay/**/*.c"), *ROOT.glob("relay/**/*.h"), *ROOT.glob("consumers/*.c")]
    found += ROOT.glob("consumers/*.h")
    return sorted(str(path.relative_to(ROOT)) for path in found)


def dockerfile_problems(text: str) -> list[str]:
    found = stages(text)
    if len(found) != 2:
        return [f"{len(found)} stage(s): expected two, a builder and the image"]
    builder, final = found
    problems, wheel_dir = builder_problems(builder, c_sources())
    return problems + final_problems(final, builder.name, wheel_dir)


# -- the tests ---------------------------------------------------------------------------------------------


def test_the_extensions_have_sources_to_check() -> None:
    # Every C extension setup.py builds has its sources among those the builder must copy.
    sources = c_sources()
    assert "relay/decode/_fast_path.c" in sources
    assert "consumers/_read_replies.c" in sources
    assert "relay/common/_resp_bulk.h" in sources


def test_dockerfile(dockerfile: str) -> None:
    assert dockerfile_problems(dockerfile) == []


def test_the_stages_parse(dockerfile: str) -> None:
    builder, final = stages(dockerfile)
    assert (builder.base, builder.name) == ("python:3.11-slim", "builder")
    assert (final.base, final.name) == ("python:3.11-slim", None)
    assert copied_sources(builder)[:3] == ["pyproject.toml", "setup.py", "MANIFEST.in"]
    assert copied_sources(final) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("\nFROM python:3.11-slim\n", "\n", "1 stage(s)"),
        ("FROM python:3.11-slim AS builder", "FROM python:3.11-slim", "no name"),
        ("install -y --no-install-recommends gcc libc6-dev", "install -y libc6-dev", "no C compiler"),
        ("RUN pip wheel --wheel-dir /wheels .", "RUN pip wheel --wheel-dir /wheels logrelay", "no `pip wheel"),
        (
            " \\\n    && cd / \\\n    && python -m relay.common.speedups\n",
            "\n",
            "stage builder: no RUN python -m relay.common.speedups",
        ),
        ("    && cd / \\\n", "", "cd / first"),
        ("setup.py MANIFEST.in", "MANIFEST.in", "setup.py is not copied"),
        ("COPY consumers ./consumers", "", "consumers/_read_replies.c is not copied"),
        ("COPY relay ./relay", "COPY relay/cli ./relay/cli", "relay/decode/_fast_path.c is not copied"),
        ("COPY --from=builder /wheels /wheels", "", "does not copy the wheels"),
        ("RUN pip install --no-index --find-links /wheels logrelay", "RUN pip install logrelay", "not --no-index"),
        (
            "RUN pip install --no-index --find-links /wheels logrelay",
            "RUN apt-get install -y gcc && pip install --no-index --find-links /wheels logrelay",
            "a compiler in the final image",
        ),
        ("    && rm -rf /wheels \\\n    && python -m relay.common.speedups\n", "", "stage python:3.11-slim: no RUN"),
        ("USER logrelay:logrelay", "USER root", "root"),
        ('ENTRYPOINT ["logrelay"]', "ENTRYPOINT logrelay", "ENTRYPOINT"),
        ('CMD ["catch"]', 'CMD ["cach"]', "CMD"),
        ("EXPOSE 9020", "EXPOSE 9021", "EXPOSE"),
        ("chown logrelay:logrelay /var/log/logrelay", "true", "/var/log/logrelay"),
    ],
)
def test_the_checks_catch_a_broken_dockerfile(dockerfile: str, old: str, new: str, expected: str) -> None:
    assert dockerfile.count(old) == 1, old
    problems = dockerfile_problems(dockerfile.replace(old, new))
    assert any(expected in problem for problem in problems), problems
