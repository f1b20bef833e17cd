"""A consumer does not load the catcher's decoder (or anything else of the catcher)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_file_consumer_loads_only_what_both_halves_share() -> None:
    code = "import json, sys, consumers.file_consumer; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    relay_modules = [name for name in json.loads(done.stdout) if name == "relay" or name.startswith("relay.")]
    assert relay_modules, "the consumer uses relay.common"
    assert all(name in ("relay", "relay.common") or name.startswith("relay.common.") for name in relay_modules), (
        relay_modules
    )
