"""The optional C parts are optional for machines without a compiler, not for this one."""

from __future__ import annotations

import os
import shutil

import pytest

from consumers import jsoncheck, streamentries
from relay import directjson, pickleops, publishscript


@pytest.mark.skipif(
    bool(os.environ.get("LOGRELAY_PURE_PYTHON")) or not (shutil.which("cc") or shutil.which("gcc")),
    reason="pure Python asked for, or no C compiler: the Python paths are used",
)
@pytest.mark.parametrize(
    ("implementation", "extension"),
    [
        (pickleops.IMPLEMENTATION, "relay._pickle_scan"),
        (directjson.IMPLEMENTATION, "relay._pickle_json"),
        (publishscript.RECORD_ARGS_IMPLEMENTATION, "relay._resp"),
        (jsoncheck.IMPLEMENTATION, "consumers._json_check"),
        (streamentries.IMPLEMENTATION, "consumers._stream_entries"),
    ],
)
def test_every_c_part_is_built_wherever_a_compiler_is(implementation: str, extension: str) -> None:
    assert implementation == "c", f"pip install did not build {extension}"
