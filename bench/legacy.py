"""What a Python 2.7 fleet costs the catcher: the same records from 2.7 and from 3.13, decoded side by side.

    python -m bench.legacy [--records 20000] [--repeat 5] [--python2 PATH] [--python3 PATH]

Runs tests/support/legacy_sender.py ``--frames`` in the real interpreters
(pyenv's 2.7 and 3.13 unless given): the frames their stock
``SocketHandler.makePickle`` makes (cPickle protocol 1 in 2.7, pickle
protocol 1 in 3.13) of the same four records (``plain``: a formatted
message; ``typical``: that and a request id, the commonest kind;
``exception``: with a traceback; ``values``: an ``extra=`` of every value
kind, datetimes, Decimal, UUID, OrderedDict, bytes, sets, big ints).  For
each it times :func:`relay.decode.frames.decode_payload` (the C fast path,
then the Python path for what it leaves) and
:func:`relay.decode.frames.decode_payload_python` (the Python path alone),
best of ``--repeat`` runs over ``--records`` decodes each, checks first that
both give the same bytes, and prints µs per record with the ratios
2.7 / 3.13 (what a 2.7 sender costs against a 3.13 one) and Python / C.
The C fast path does not read Python 2's string opcodes: every 2.7 frame
takes the Python path.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from bench.decode import best_us_per_item
from relay.decode import fast_path
from relay.decode.frames import DecodeLimits, decode_payload, decode_payload_python
from tests.support.clients import REPO_ROOT
from tests.support.interpreters import interpreter

KINDS = ("values", "exception", "plain", "typical")  # legacy_sender.py's records, in order


def frames_of(python: Path) -> dict[str, bytes]:
    """The payloads (frames without their header) ``python``'s SocketHandler makes of the sender's records."""
    out = subprocess.run(
        [str(python), "tests/support/legacy_sender.py", "--frames"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    payloads = [bytes.fromhex(line)[4:] for line in out.split()]
    assert len(payloads) == len(KINDS), out
    return dict(zip(KINDS, payloads, strict=True))


def measure(payload: bytes, records: int, repeat: int) -> dict[str, object]:
    limits = DecodeLimits()
    assert decode_payload(payload, limits) == decode_payload_python(payload, limits)
    budget = limits.decoded_budget(len(payload))
    items = [payload] * records
    return {
        "bytes": len(payload),
        "fast_path": fast_path.pickle_to_json(payload, limits.max_depth, budget) is not None,
        "c_us": best_us_per_item(lambda p: decode_payload(p, limits), items, repeat),
        "python_us": best_us_per_item(lambda p: decode_payload_python(p, limits), items, repeat),
    }


def run(python2: Path, python3: Path, records: int, repeat: int) -> dict[str, object]:
    old, new = frames_of(python2), frames_of(python3)
    rows: dict[str, object] = {}
    for kind in KINDS:
        py2, py3 = measure(old[kind], records, repeat), measure(new[kind], records, repeat)
        rows[kind] = {
            "2.7": py2,
            "3.13": py3,
            "c_2.7_over_3.13": py2["c_us"] / py3["c_us"],  # type: ignore[operator]
            "python_2.7_over_3.13": py2["python_us"] / py3["python_us"],  # type: ignore[operator]
        }
    return {"fast_path": fast_path.IMPLEMENTATION, "records": records, "kinds": rows}


def table(result: dict[str, object]) -> str:
    lines = [
        "µs per record      |  3.13: C path  Python  (fast?)  |  2.7: C path  Python  (fast?)  |"
        "  2.7/3.13: C path  Python"
    ]
    kinds = result["kinds"]
    assert isinstance(kinds, dict)
    for kind, row in kinds.items():
        new, old = row["3.13"], row["2.7"]
        lines.append(
            f"{kind:<18} | {new['c_us']:13.1f} {new['python_us']:7.1f}  {('yes' if new['fast_path'] else 'no'):>7}  |"
            f" {old['c_us']:12.1f} {old['python_us']:7.1f}  {('yes' if old['fast_path'] else 'no'):>7}  |"
            f" {row['c_2.7_over_3.13']:16.2f}x {row['python_2.7_over_3.13']:6.2f}x"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--python2", type=Path, default=None, help="a CPython 2.7 (default: pyenv's)")
    parser.add_argument("--python3", type=Path, default=None, help="a CPython 3.13 (default: pyenv's)")
    args = parser.parse_args()
    python2 = args.python2 or interpreter("2.7")
    python3 = args.python3 or interpreter("3.13")
    if python2 is None or python3 is None:
        parser.error("CPython 2.7 and 3.13 are needed: install them with pyenv, or name them (--python2, --python3)")
    result = run(python2, python3, args.records, args.repeat)
    print(json.dumps(result))
    print(table(result))


if __name__ == "__main__":
    main()
