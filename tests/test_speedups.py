"""The C speedups: one loader, one switch, built wherever there is a compiler."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from consumers import json_check, read_replies
from relay import __version__
from relay.common import speedups
from relay.decode import cost_scan, fast_path, syslog_message
from relay.publish import packing

MODULES = {
    "relay.decode._cost_scan": cost_scan,
    "relay.decode._fast_path": fast_path,
    "relay.decode._syslog": syslog_message,
    "relay.publish._packing": packing,
    "consumers._json_check": json_check,
    "consumers._read_replies": read_replies,
}


@pytest.mark.skipif(
    speedups.PURE_PYTHON or not (shutil.which("cc") or shutil.which("gcc")),
    reason="pure Python asked for, or no C compiler: the Python paths are used",
)
@pytest.mark.parametrize("extension", list(MODULES))
def test_every_c_part_is_built_wherever_a_compiler_is(extension: str) -> None:
    assert MODULES[extension].IMPLEMENTATION == "c", f"pip install did not build {extension}"
    assert speedups.IN_USE[extension] == "c"


def in_use_in_a_new_process(environment: dict[str, str]) -> dict[str, object]:
    """What each module uses in a fresh interpreter, and what the loader recorded there."""
    code = (
        "import json\n"
        "from consumers import json_check, read_replies\n"
        "from relay.common import speedups\n"
        "from relay.decode import cost_scan, fast_path, syslog_message\n"
        "from relay.publish import packing\n"
        "print(json.dumps({'modules': [m.IMPLEMENTATION for m in (cost_scan, fast_path, syslog_message, packing,"
        " json_check, read_replies)], 'recorded': speedups.IN_USE}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True, timeout=60
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_one_switch_turns_every_speedup_off() -> None:
    environment = {key: value for key, value in os.environ.items() if key != speedups.SWITCH}
    pure = in_use_in_a_new_process({**environment, speedups.SWITCH: "1"})
    assert pure["modules"] == ["python"] * len(MODULES)
    assert pure["recorded"] == dict.fromkeys(MODULES, "python")


def test_the_loader_records_what_each_module_got() -> None:
    environment = {key: value for key, value in os.environ.items() if key != speedups.SWITCH}
    result = in_use_in_a_new_process(environment)
    recorded = result["recorded"]
    assert isinstance(recorded, dict)
    assert sorted(recorded) == sorted(MODULES)
    assert result["modules"] == [recorded[name] for name in MODULES]


def test_the_list_of_extensions_is_what_setup_py_builds() -> None:
    setup = (Path(__file__).parent.parent / "setup.py").read_text(encoding="utf-8")
    built = re.findall(r'Extension\(\s*"([\w.]+)"', setup)
    assert sorted(built) == sorted(speedups.EXTENSIONS) == sorted(MODULES)


def test_the_check_command_fails_where_an_extension_is_missing() -> None:
    environment = {key: value for key, value in os.environ.items() if key != speedups.SWITCH}
    # An extension that cannot be imported, as where pip found no compiler.
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'relay.decode._cost_scan':\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from relay.common.speedups import main\n"
        "raise SystemExit(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", blocker], env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "not built: cost_scan" in done.stdout


def test_the_start_line_names_what_runs_and_what_was_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speedups, "PURE_PYTHON", False)
    monkeypatch.setattr(speedups, "IN_USE", {"relay.decode._fast_path": "c", "relay.decode._cost_scan": "python"})
    assert speedups.missing() == ["relay.decode._cost_scan"]
    assert speedups.describe() == "C speedups: fast_path; not built: cost_scan"


def test_the_switch_is_not_reported_as_a_missing_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speedups, "PURE_PYTHON", True)
    monkeypatch.setattr(speedups, "IN_USE", dict.fromkeys(MODULES, "python"))
    assert speedups.missing() == []
    assert speedups.describe() == f"C speedups off ({speedups.SWITCH}=1)"


def version_lines(environment: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "relay", "--version"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.splitlines()


def test_the_version_says_which_code_paths_run() -> None:
    environment = {key: value for key, value in os.environ.items() if key != speedups.SWITCH}
    recorded = in_use_in_a_new_process(environment)["recorded"]
    assert isinstance(recorded, dict)
    built = sorted(name.rpartition(".")[2].lstrip("_") for name, how in recorded.items() if how == "c")
    first, second = version_lines(environment)
    if len(built) == len(speedups.EXTENSIONS):
        assert first.endswith(", C paths")
    else:
        assert "python" in first
    assert second.startswith(f"C speedups: {', '.join(built) or 'none'}")
    assert version_lines({**environment, speedups.SWITCH: "1"}) == [
        f"logrelay, version {__version__}, python paths ({speedups.SWITCH}=1)",
        f"C speedups off ({speedups.SWITCH}=1)",
    ]
