"""Every CPython from 2.7 to 3.13 as a sender: the stock ``SocketHandler``, a real catcher and redis-server.

Each interpreter runs tests/support/legacy_sender.py, in a process of its
own, sending the same four records (a realistic ``extra=``, an exception,
a plain one, a typical one); each record in the stream must equal, value for value, the one
Python 3.13 sends, but for what legitimately differs between two processes
and two versions (:data:`PER_PROCESS`, :data:`ADDED_IN`, the traceback's
text).  The interpreters are pyenv's (``$PYENV_ROOT``, else ``pyenv root``,
else ``~/.pyenv``): a version not installed there is skipped, saying so, and
where 3.13 is missing every version is.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import REPO_ROOT, read_stream
from tests.support.interpreters import interpreter, pyenv_root
from tests.support.polling import wait_until
from tests.support.processes import CatcherProcess
from tests.support.realredis import RedisServer
from tests.support.streams import stream_length

pytestmark = pytest.mark.integration

CatcherFactory = Callable[..., CatcherProcess]

SENDER = REPO_ROOT / "tests" / "support" / "legacy_sender.py"
REFERENCE = "3.13"
VERSIONS = ["2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", REFERENCE]
RECORDS = 4  # values, exception, plain, typical

#: Attributes that differ between any two processes (or, pathname, with how
#: the interpreter reports a script's path: relative before 3.9).
PER_PROCESS = frozenset(
    {"created", "msecs", "relativeCreated", "thread", "threadName", "process", "processName", "pathname"}
)
#: Attributes LogRecord gained in a version: absent from records of older senders.
ADDED_IN = {"stack_info": (3, 0), "taskName": (3, 12)}
#: extra= values only where the stdlib has the type (Python 2 has no datetime.timezone).
ONLY_PYTHON3 = frozenset({"when_utc", "when_plus2"})
#: What Python 2 cannot send as Python 3 does: an empty str is UTF-8, so text.
PYTHON2_VALUES = {"empty_blob": ""}


def require(version: str) -> Path:
    python = interpreter(version)
    if python is None:
        pytest.skip(f"CPython {version} is not installed under pyenv ({pyenv_root()}/versions)")
    return python


def send(python: Path, port: int) -> int:
    """Run the sender in ``python``; its pid (the ``process`` of its records)."""
    proc = subprocess.Popen(
        [str(python), str(SENDER), "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"{python} sender failed: {out!r} {err!r}"
    return proc.pid


def records_of(redis_server: RedisServer, pid: int) -> list[dict[str, Any]]:
    with redis_server.client() as client:
        records = [json.loads(fields[b"record"]) for _, fields in read_stream(client)]
    return [record for record in records if record["process"] == pid]


def comparable(record: dict[str, Any], version: tuple[int, int]) -> dict[str, Any]:
    """``record`` without what may differ between senders; the last line of its traceback."""
    out = {key: value for key, value in record.items() if key not in PER_PROCESS}
    if isinstance(out.get("exc_text"), str):
        out["exc_text"] = out["exc_text"].rstrip("\n").rsplit("\n", 1)[-1]
    for key, since in ADDED_IN.items():
        if version < since:
            out.pop(key, None)
    if version < (3, 0):
        for key in ONLY_PYTHON3:
            out.pop(key, None)
    return out


@pytest.mark.parametrize("version", VERSIONS)
def test_records_from_each_cpython_decode_as_python_3_13_sends_them(
    version: str, redis_server: RedisServer, catcher_factory: CatcherFactory
) -> None:
    reference_python = require(REFERENCE)
    python = require(version)
    catcher = catcher_factory(redis_server.url)

    reference_pid = send(reference_python, catcher.port)
    pid = send(python, catcher.port) if version != REFERENCE else reference_pid
    wait_until(
        lambda: stream_length(redis_server) >= (RECORDS if pid == reference_pid else 2 * RECORDS),
        timeout=30,
        what="every record",
    )

    reference, got = records_of(redis_server, reference_pid), records_of(redis_server, pid)
    assert len(reference) == len(got) == RECORDS
    major, minor = (int(part) for part in version.split("."))
    for sent, expected in zip(got, reference, strict=True):
        if major == 2:
            # Python 2's handler formats a record with exc_info before
            # pickling it, leaving ``message`` (Python 3's drops it).
            assert sent.pop("message", sent["msg"]) == sent["msg"]
            for key, value in PYTHON2_VALUES.items():
                if key in sent:
                    assert sent[key] == value
                    sent[key] = expected[key]
        assert comparable(sent, (major, minor)) == comparable(expected, (major, minor))
    # Key order kept where it is the value's own.
    assert list(got[0]["ordered"]) == ["b", "a", "c"]
    assert got[1]["exc_text"].endswith("ValueError: boom ✓")
    if major >= 3:
        assert set(got[0]) >= ONLY_PYTHON3
    assert catcher.stop() == 0
