"""Differential fuzzing of the consumer's C against its Python references, time-bounded.

    python -m tests.fuzz.consumer [--seconds 60] [--artifacts DIR]
    scripts/fuzz-consumer ...      (the same)

Run it against a build with AddressSanitizer and UBSan to catch memory errors
as well as disagreements (``scripts/fuzz-sanitized`` does it: it builds the
extensions out of tree with ``-fsanitize=address,undefined`` and runs this
there with ``LD_PRELOAD`` of libasan).

Each input is a read reply's bytes: a generated XREADGROUP reply (RESP2 or
RESP3) of usual entries (the catcher's five fields, records of varied JSON,
most with a sixth, seq: runs of one producer's numbers, jumps, malformed
identities) and other ones (other fields, elements of every RESP type at every place of
an entry, other shapes), some of its bytes changed, cut into chunks.  What
must hold, for any input (:func:`check_one`):

* ``ReplyReader`` (``_read_replies_parser.c``) and
  :class:`consumers.reply_parser.ReplyReaderPython` give the same answer to
  every chunk: None, the same result, or a ``ValueError`` with the same
  message, and nothing else;
* for entries: the C reader's items are the reference's; they pass
  :func:`consumers.read_replies.check_items` (what the byte reader takes,
  the list check takes); ``bulk_ids`` in C (in place, and on the lists) is
  :func:`~consumers.read_replies.bulk_ids_python`; ``entries`` in C is
  :func:`~consumers.read_replies.entries_python`; the JSON lines and the
  text lines rendered in C (in place, and from the lists), their leftovers
  filled in by ``format()``, are what the Python paths write, and the same
  lines as for the entries with their seq taken off; ``producer_runs`` in C
  (in place, on the lists, on slices) is
  :func:`~consumers.read_replies.producer_runs_python`; a slice reads as the
  list's slice;
* a record the C JSON check (``_json_scan.h``) says is one JSON object is
  one for ``orjson.loads``.

A violation raises :class:`FuzzFinding`; the input is written to the
artifacts directory (default ``$TMPDIR/fuzz-consumer``) and the run exits 1.
Without the C extension there is nothing to compare: exit status 2.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import pathlib
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Final

import orjson

from consumers import read_replies
from consumers.formatting import EntryFormatter, JsonLineFormatter, LineFormatter
from consumers.read_replies import (
    ReplyReader,
    bulk_ids_python,
    check_items,
    entries_python,
    producer_runs_python,
    usual_fields,
)
from consumers.reply_parser import ENTRIES, ReplyReaderPython

#: Text formats: plain %(name)s fields (rendered in C) and one the C renderer leaves to Python.
TEXT_FORMATS: Final = (
    "%(asctime)s %(levelname)s %(name)s %(message)s [%(client)s %(entry_id)s]",
    "%(message)s %(missing)s %(catcher)s %(received)s",
    "%(levelname)-8s %(message)r",
)

#: One element of each RESP2 and RESP3 type, put raw into entries.
ELEMENTS: Final = (
    b"~1\r\n$1\r\nx\r\n",
    b"%1\r\n$1\r\nx\r\n$1\r\ny\r\n",
    b"|1\r\n$1\r\nx\r\n$1\r\ny\r\n",
    b">1\r\n$1\r\nx\r\n",
    b",1.5\r\n",
    b"(12345678901234567890\r\n",
    b"#t\r\n",
    b"=7\r\ntxt:abc\r\n",
    b"!3\r\nerr\r\n",
    b"_\r\n",
    b":7\r\n",
    b":123456789012345678901\r\n",
    b"+OK\r\n",
    b"-ERR x\r\n",
    b"$-1\r\n",
    b"*-1\r\n",
    b"$0\r\n\r\n",
    b"*0\r\n",
)


class FuzzFinding(AssertionError):
    """The C and the Python reference disagree, or an answer breaks a contract."""


class Raw(bytes):
    """Bytes put into an encoded reply as they are (any RESP element)."""


def encode(value: Any) -> bytes:
    """A value as RESP: bytes as a bulk string, None as a null array, lists as arrays, :class:`Raw` as is."""
    if isinstance(value, Raw):
        return bytes(value)
    if value is None:
        return b"*-1\r\n"
    if isinstance(value, bytes):
        return b"$%d\r\n%b\r\n" % (len(value), value)
    return b"*%d\r\n" % len(value) + b"".join(encode(item) for item in value)


def reply(entries: list[Any], *, resp3: bool) -> bytes:
    """An XREADGROUP reply of stream ``s`` holding ``entries``."""
    body = encode(b"s") + encode(entries)
    return (b"%1\r\n" + body) if resp3 else (b"*1\r\n*2\r\n" + body)


def answers(make: Any, blob: bytes, cuts: Sequence[int]) -> tuple[list[object], Any]:
    """A new reader's answer to each chunk of ``blob`` cut at ``cuts`` (entries as lists), and its entries, if any."""
    reader = make()
    said: list[object] = []
    for start, end in itertools.pairwise([0, *sorted(set(cuts)), len(blob)]):
        if start == end:
            continue
        try:
            found = reader.feed(blob[start:end])
        except ValueError as exc:
            said.append(("ValueError", str(exc)))
            return said, None
        except Exception as exc:
            raise FuzzFinding(f"{make.__name__}.feed raised {type(exc).__name__}: {exc}") from exc
        if found is None:
            said.append(None)
            continue
        kind, value = found
        said.append((kind, list(value)) if kind == ENTRIES else found)
        return said, value if kind == ENTRIES else None
    return said, None


def one_by_one(formatter: EntryFormatter, items: Sequence[Any]) -> list[bytes]:
    """What ``format()`` makes of each entry, or the error it raises: the Python path, as the consumer runs it."""
    lines: list[bytes] = []
    for entry_id, flat in items:
        fields = dict(zip(flat[::2], flat[1::2], strict=True)) if flat is not None else {}
        try:
            lines.append(formatter.format(entry_id, fields))
        except Exception as exc:
            lines.append(f"error: {type(exc).__name__}: {exc}\n".encode())
    return lines


def all_at_once(formatter: EntryFormatter, items: Sequence[Any]) -> list[bytes]:
    """``format_items``, the entries it leaves filled in by ``format()``, as the consumer does; lines split."""
    lines: list[bytes] = []
    for piece in formatter.format_items(items):
        lines += one_by_one(formatter, [items[piece]]) if isinstance(piece, int) else [piece]
    return b"".join(lines).split(b"\n")


def python_text(formatter: LineFormatter, items: Sequence[Any]) -> list[bytes]:
    """The text formatter's Python path (``format_items_python``), its leftovers filled in by ``format()``."""
    lines: list[bytes] = []
    for piece in formatter.format_items_python(items):
        lines += one_by_one(formatter, [items[piece]]) if isinstance(piece, int) else [piece]
    return b"".join(lines).split(b"\n")


def without_seq(items: Sequence[Any]) -> list[Any]:
    """The entries with the seq of every usual entry taken off (ten fields: the same entry as before identities)."""
    return [[item[0], item[1][:10]] if (fields := usual_fields(item)) and len(fields) == 12 else item for item in items]


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise FuzzFinding(what)


def check_one(blob: bytes, cuts: Sequence[int]) -> None:
    """Every property of the module docstring for one input; :class:`FuzzFinding` if one fails."""
    c_said, in_place = answers(ReplyReader, blob, cuts)
    py_said, items = answers(ReplyReaderPython, blob, cuts)
    expect(c_said == py_said, f"the readers disagree:\n  C:      {c_said!r:.600}\n  Python: {py_said!r:.600}")
    if in_place is None:
        return
    expect(list(in_place) == items, "the C reader's items are not the reference's")
    try:
        check_items(items)
    except ValueError as exc:
        raise FuzzFinding(f"the byte reader took entries check_items refuses: {exc}") from exc
    for entries in (in_place, items):
        expect(read_replies.bulk_ids(entries) == bulk_ids_python(items), "bulk_ids differs from the reference")
    converted = read_replies.entries(items)
    expect(converted == entries_python(items), "entries() in C differs from entries_python")
    runs = producer_runs_python(items)
    for entries in (in_place, items):
        expect(read_replies.producer_runs(entries) == runs, "producer_runs in C differs from the reference")
    plain = without_seq(items)
    for entries in (in_place, items):
        json_formatter = JsonLineFormatter()
        expect(
            all_at_once(json_formatter, entries) == all_at_once(JsonLineFormatter(), plain),
            "JSON lines of entries with seq differ from those of the same entries without",
        )
        expect(
            all_at_once(json_formatter, entries) == b"".join(one_by_one(json_formatter, items)).split(b"\n"),
            "JSON lines differ from format()",
        )
        for fmt in TEXT_FORMATS:
            expect(
                all_at_once(LineFormatter(fmt), entries) == python_text(LineFormatter(fmt), items),
                f"text lines of {fmt!r} differ from the Python path",
            )
            expect(
                all_at_once(LineFormatter(fmt), entries) == all_at_once(LineFormatter(fmt), plain),
                f"text lines of {fmt!r} of entries with seq differ from those of the same entries without",
            )
    for start in (1, len(items) // 2, len(items)):
        expect(list(in_place[start:]) == items[start:], f"a slice from {start} reads otherwise")
        expect(read_replies.bulk_ids(in_place[start:]) == bulk_ids_python(items[start:]), "bulk_ids of a slice")
        expect(
            read_replies.producer_runs(in_place[start:]) == producer_runs_python(items[start:]),
            f"producer_runs of a slice from {start}",
        )
    from consumers import _json_check  # type: ignore[attr-defined]  # the extension exists: ReplyReader did

    for _, fields in items:
        for record in fields[1::2] if fields else ():
            if _json_check.is_json_object(record):
                try:
                    parsed = orjson.loads(record)
                except orjson.JSONDecodeError as exc:
                    raise FuzzFinding(f"the JSON check took {record!r:.200}, orjson refuses it: {exc}") from exc
                expect(type(parsed) is dict, f"the JSON check took {record!r:.200}, not an object for orjson")


def run(seconds: float, artifacts: pathlib.Path) -> int:
    """Generated inputs for ``seconds`` (hypothesis, no coverage guidance); 1 on a finding, written to artifacts."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from hypothesis.configuration import set_hypothesis_home_dir

    from tests.support.strategies import seq_values

    texts = st.text(max_size=30) | st.sampled_from(["", "é ✓ 😀", "\ud800", '"quoted"', "back\\slash", "logrelay"])
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts
    attributes = st.dictionaries(
        st.sampled_from(["msg", "created", "msecs", "exc_info", "exc_text", "stack_info", "name", "levelname", "x"]),
        scalars | st.lists(scalars, max_size=3),
        max_size=9,
    )

    @st.composite
    def records(draw: st.DrawFn) -> bytes:
        record = {"msg": "m", "created": 1_700_000_000.25, "msecs": 250.0, "exc_info": None, "name": "a"}
        record |= draw(attributes)
        text = json.dumps(record, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1])))
        return text.encode("utf-8", "surrogatepass") if draw(st.booleans()) else text.encode("utf-8", "replace")

    stream_ids = st.tuples(st.integers(0, 2**64), st.integers(0, 99)).map(lambda t: b"%d-%d" % t)
    ids = stream_ids | st.binary(max_size=4)
    names = st.sampled_from([b"v", b"1", b"record", b"client", b"catcher", b"received", b"seq", b"x", b""])
    raw = st.sampled_from(ELEMENTS).map(Raw)
    usual = st.builds(
        lambda i, r, c, t: [i, [b"v", b"1", b"record", r, b"client", c, b"catcher", b"k", b"received", t]],
        st.one_of(stream_ids, stream_ids, stream_ids, st.binary(max_size=4)),
        records() | st.binary(max_size=20),
        st.sampled_from([b"10.0.0.1:5000", b"c:1", b""]),
        st.sampled_from([b"1700000000.5", b"1.5", b"x"]),
    )
    odd = st.one_of(
        st.tuples(ids, st.lists(names | records() | raw, max_size=12) | st.none() | raw).map(list),
        st.tuples(raw, st.lists(names, max_size=2)).map(list),
        raw,
        st.lists(ids, max_size=3),
    )

    @st.composite
    def inputs(draw: st.DrawFn) -> tuple[bytes, list[int]]:
        # A count drawn first: hypothesis's lists are mostly empty or short, and runs need a few entries.
        entries = [draw(st.one_of(usual, usual, odd)) for _ in range(draw(st.integers(0, 8)))]
        # Most usual entries get a seq, as a catcher writes them now: runs of a producer's numbers and the rest.
        for entry, seq in zip(entries, draw(seq_values(size=len(entries))), strict=True):
            if seq is not None and type(entry) is list and len(entry) == 2 and type(entry[1]) is list:
                entry[1] = [*entry[1], b"seq", seq]
        data = bytearray(reply(entries, resp3=draw(st.booleans())))
        for _ in range(draw(st.sampled_from([0, 0, 1, 2, 4]))):
            at = draw(st.integers(0, len(data)))
            change = draw(st.integers(0, 2))
            if change == 0 and at < len(data):
                data[at] = draw(st.sampled_from(b"*$~%|>,(#=!_:+-0123456789\r\nx"))
            elif change == 1:
                data[at:at] = draw(st.sampled_from([b"\r\n", b"-1", b"0", b"*", b"$", b"_\r\n"]))
            else:
                del data[at : at + draw(st.integers(1, 4))]
        blob = bytes(data)
        cuts = draw(st.lists(st.integers(1, max(1, len(blob) - 1)), max_size=6))
        return blob, cuts

    deadline = time.monotonic() + seconds
    runs = 0
    last: tuple[bytes, list[int]] = (b"", [])

    @settings(
        max_examples=200,  # short calls: the deadline is checked between them
        database=None,
        deadline=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(inputs())
    def one(case: tuple[bytes, list[int]]) -> None:
        nonlocal runs, last
        if time.monotonic() >= deadline:
            return
        runs += 1
        last = case
        check_one(*case)

    print(f"fuzz-consumer: for {seconds:g} s, generated replies (hypothesis, no coverage guidance)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-consumer-hypothesis-") as home:
        set_hypothesis_home_dir(home)
        try:
            while time.monotonic() < deadline:
                one()
        except Exception as exc:  # a FuzzFinding (hypothesis shrank it: ``last`` is the shrunk input)
            artifacts.mkdir(parents=True, exist_ok=True)
            blob, cuts = last
            path = artifacts / f"finding-{hashlib.sha1(blob).hexdigest()}.json"
            path.write_text(json.dumps({"reply": blob.decode("latin-1"), "cuts": cuts, "error": repr(exc)}))
            print(f"fuzz-consumer: FINDING after {runs} runs: {exc!r}\n  input: {path}")
            return 1
        finally:
            set_hypothesis_home_dir(None)
    elapsed = time.monotonic() - started
    print(f"fuzz-consumer: {runs} runs in {elapsed:.0f} s ({runs / elapsed:.0f}/s), no findings")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60, help="how long to fuzz (default 60)")
    parser.add_argument(
        "--artifacts",
        type=pathlib.Path,
        default=pathlib.Path(tempfile.gettempdir()) / "fuzz-consumer",
        help="where a finding's input is written (default: $TMPDIR/fuzz-consumer)",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if ReplyReader is None:
        print("fuzz-consumer: consumers._read_replies is not built (or LOGRELAY_PURE_PYTHON is set): no C to compare")
        return 2
    return run(args.seconds, args.artifacts)


if __name__ == "__main__":
    sys.exit(main())
