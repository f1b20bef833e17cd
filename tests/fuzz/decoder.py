"""Coverage-guided fuzzing of the frame decoder and the safe unpickler, time-bounded.

    scripts/fuzz-decoder [--seconds 60] [--max-len 16384] [--artifacts DIR] [-- LIBFUZZER_ARGS...]

With atheris installed (``pip install atheris``; a prebuilt wheel, no compiler
needed) this runs libFuzzer over :func:`test_one_input`, with coverage
instrumentation of ``relay.decode.frames``, ``relay.decode.cost_scan``, ``relay.decode.unpickler``,
``relay.decode.inert`` and ``relay.decode.to_json``, starting from a seed corpus of real
``SocketHandler`` frames (and their bare pickles) written to a temporary
directory.  Without atheris it falls back to a hypothesis-driven random run of
the same :func:`test_one_input` (no coverage guidance) and says so.

Each input is used three ways: as a pickle for :func:`decode_payload` (only
``ValueError`` may escape; a result must be UTF-8 JSON of an object), as a raw
byte stream for :class:`FrameDecoder` (only :class:`FrameTooLarge` may escape, and only over the skip cap;
every event must be a JSON record or a bad frame with a reason, never the
decoder's catch-all for unforeseen exceptions; the buffer stays within one
frame), and wrapped in one well-formed frame.  Where the C extensions are
built, the C scan must give the Python scan's verdict and the C
pickle-to-JSON path (``relay.decode.fast_path``) must answer None or exactly what
the Python path returns.  An audit hook notes any process
start, ``exec``/``compile`` or native library load during decoding: nothing a
pickle names may run.  A violation raises :class:`FuzzFinding`; libFuzzer then
writes the input to ``crash-<sha1>`` in the artifacts directory (default:
``$TMPDIR/fuzz-decoder``) and the run exits non-zero.

Known problems the run can rediscover (reproducers in ``tests/relay/decode/test_properties.py``):
a ~1000-deep chain of stand-ins makes ``RecursionError`` escape; hash-colliding
int keys and long stand-in chains are slow (``-timeout``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import pickle
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Final

from bench.frames import build_frames

try:
    import atheris  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the machine
    atheris = None
    ATHERIS_MISSING: str | None = f"{type(exc).__name__}: {exc}"
else:
    ATHERIS_MISSING = None

INSTRUMENTED: Final = [
    "relay.decode.frames",
    "relay.decode.cost_scan",
    "relay.decode.cost_model",
    "relay.decode.unpickler",
    "relay.decode.inert",
    "relay.decode.known_types",
    "relay.decode.to_json",
]

# Set in the child process that runs libFuzzer (see run_atheris): only it needs instrumented modules.
CHILD_ENV: Final = "FUZZ_DECODER_LIBFUZZER_CHILD"

if atheris is not None and os.environ.get(CHILD_ENV) == "1":
    with atheris.instrument_imports(include=INSTRUMENTED):
        import relay.decode.frames  # noqa: F401 - loaded instrumented; the import below then takes it from sys.modules
from relay.decode import cost_scan, fast_path  # noqa: E402 - after the instrumented import of the same modules
from relay.decode.frames import (  # noqa: E402
    KEPT_OF_OVERSIZE,
    BadFrame,
    DecodeLimits,
    FrameDecoder,
    FrameTooLarge,
    Record,
    decode_payload,
    decode_payload_python,
)

# Frames between the two limits are discarded (the decoder's skipping state), larger ones close the stream:
# both small enough for an input of --max-len (16 KiB) to finish discarding a frame and go on.
LIMITS: Final = DecodeLimits(max_frame_bytes=8 * 1024, max_skip_bytes=12 * 1024)
CATCH_ALL_REASON: Final = "undecodable record:"
# Audit events that mean something ran: a process, code, or a native library.
RUNS_SOMETHING: Final = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.startfile",
    "subprocess.Popen",
    "ctypes.",
    "exec",
    "compile",
    "pty.spawn",
    "webbrowser.open",
)


class FuzzFinding(AssertionError):
    """An input broke one of the decoder's promises."""


class _Watch:
    """Collects audit events of interest while ``active``; an audit hook cannot be removed, so it is gated."""

    def __init__(self) -> None:
        self.active = False
        self.seen: list[str] = []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if self.active and event.startswith(RUNS_SOMETHING):
            self.seen.append(f"{event}{args!r:.200}")


WATCH: Final = _Watch()
sys.addaudithook(WATCH)


def _check_json(data: bytes, where: str) -> None:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FuzzFinding(f"{where}: output is not UTF-8 JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise FuzzFinding(f"{where}: output is JSON {type(value).__name__}, not an object")


def _check_payload(data: bytes) -> None:
    try:
        out = decode_payload(data, LIMITS)
    except ValueError as exc:
        if not str(exc):
            raise FuzzFinding("decode_payload: ValueError without a reason") from exc
        return
    except Exception as exc:
        raise FuzzFinding(f"decode_payload let {type(exc).__name__} escape: {exc!r:.300}") from exc
    if type(out) is not bytes:
        raise FuzzFinding(f"decode_payload returned {type(out).__name__}")
    _check_json(out, "decode_payload")


def _check_stream(chunks: Sequence[bytes]) -> None:
    decoder = FrameDecoder(LIMITS)
    for chunk in chunks:
        too_large = False
        try:
            events = decoder.feed(chunk)
        except FrameTooLarge as exc:
            if exc.size <= LIMITS.max_skip_bytes:
                raise FuzzFinding(f"FrameTooLarge for {exc.size} bytes") from exc
            events, too_large = exc.events, True
        except Exception as exc:
            raise FuzzFinding(f"FrameDecoder.feed let {type(exc).__name__} escape: {exc!r:.300}") from exc
        for event in events:
            if isinstance(event, Record):
                _check_json(event, "FrameDecoder")
            elif not isinstance(event, BadFrame) or not event.reason:
                raise FuzzFinding(f"FrameDecoder produced {event!r:.200}")
            elif event.reason.startswith(CATCH_ALL_REASON):
                raise FuzzFinding(f"decode_payload raised an unforeseen exception: {event.reason:.300}")
        if too_large:
            return  # the connection would be closed here
        if decoder.pending_bytes > LIMITS.max_frame_bytes + 4:
            raise FuzzFinding(f"decoder holds {decoder.pending_bytes} bytes")
        if decoder.skipping and decoder.pending_bytes > KEPT_OF_OVERSIZE + 4:
            raise FuzzFinding(f"decoder holds {decoder.pending_bytes} bytes of a frame it discards")


def _check_scans_agree(data: bytes) -> None:
    """The C cost scan gives the verdict of its Python reference, reason and all (where the extension is built)."""
    c_scan = cost_scan._c_scan
    if c_scan is None:
        return
    c_result = c_scan(data)
    try:
        python_result: object = cost_scan.scan_python(data)
    except cost_scan.UnsafePickle as exc:
        python_result = str(exc)
    if c_result != python_result:
        raise FuzzFinding(f"the C scan says {c_result!r}, the Python scan {python_result!r}")


def _check_fast_path_agrees(data: bytes) -> None:
    """The C pickle-to-JSON path answers None or exactly what the Python path returns."""
    budget = LIMITS.decoded_budget(len(data))
    answer = fast_path.pickle_to_json(data, LIMITS.max_depth, budget)
    if answer is None:
        return
    try:
        reference: object = decode_payload_python(data, LIMITS)
    except ValueError as exc:
        reference = f"refused: {exc}"
    if answer != reference:
        raise FuzzFinding(f"the C fast path wrote {answer!r:.200}, the Python path {reference!r:.200}")


def test_one_input(data: bytes) -> None:
    """Every promise of the decoder, for one input; raises :class:`FuzzFinding` if one is broken."""
    WATCH.active = True
    try:
        _check_scans_agree(data)
        _check_fast_path_agrees(data)
        _check_payload(data)
        # As a stream: split where the first byte says, so chunking is explored too.
        cut = data[0] % (len(data) + 1) if data else 0
        _check_stream([data[:cut], data[cut:]])
        _check_stream([len(data).to_bytes(4, "big") + data])
    finally:
        WATCH.active = False
    if WATCH.seen:
        seen, WATCH.seen = WATCH.seen, []
        raise FuzzFinding(f"decoding ran something: {seen}")


# --------------------------------------------------------------------------- seeds


def seed_inputs() -> list[bytes]:
    """Real SocketHandler frames, their bare pickles, and the same record in every protocol."""
    frames = build_frames(48, seed=7)
    small = [f for f in frames if len(f) < 8 * 1024]
    seeds = small + [f[4:] for f in small]
    record = {"name": "seed", "msg": "hello %s", "args": None, "levelno": 20, "extra": [1, 2.5, None, {"k": b"v"}]}
    seeds += [pickle.dumps(record, protocol) for protocol in range(pickle.HIGHEST_PROTOCOL + 1)]
    # A stream with a frame over max-frame-bytes between two records: the decoder discards it and goes on.
    oversize = LIMITS.max_frame_bytes + 1
    seeds.append(small[0] + oversize.to_bytes(4, "big") + small[1] * (oversize // len(small[1]) + 1))
    return seeds


# Tokens for libFuzzer's mutations: opcodes with their usual arguments and the names the stand-ins know.
DICTIONARY: Final = [
    b"\x80\x04",
    b"\x80\x02",
    b"\x94",
    b"q\x00",
    b"h\x00",
    b"r\x00\x00\x00\x00",
    b"j\x00\x00\x00\x00",
    b"\x85R",
    b"\x86R",
    b"tR",
    b"\x81",
    b"\x92",
    b"b",
    b"(",
    b"2",
    b"}",
    b"]",
    b"\x8f",
    b"\x90",
    b"\x95",
    b"\x8c\x01v",
    b"X\x01\x00\x00\x00v",
    b"c__builtin__\nlist\n",
    b"c__builtin__\nbytes\n",
    b"c__builtin__\nset\n",
    b"c__builtin__\ngetattr\n",
    b"c_codecs\nencode\n",
    b"ccopy_reg\n_reconstructor\n",
    b"ccollections\nOrderedDict\n",
    b"cdatetime\ndatetime\n",
    b"cdatetime\ntimezone\n",
    b"cdatetime\ntimedelta\n",
    b"czoneinfo\nZoneInfo\n",
    b"cdecimal\nDecimal\n",
    b"cuuid\nUUID\n",
    b"cpathlib\nPosixPath\n",
    b"cipaddress\nIPv4Address\n",
    b"cos\nsystem\n",
    b"cmyapp\nThing\n",
    b"latin1",
]


def write_dictionary(path: pathlib.Path) -> None:
    path.write_text("".join('"' + "".join(f"\\x{byte:02x}" for byte in token) + '"\n' for token in DICTIONARY))


def write_corpus(directory: pathlib.Path) -> int:
    seeds = seed_inputs()
    for index, seed in enumerate(seeds):
        (directory / f"seed-{index:03d}").write_bytes(seed)
    return len(seeds)


# --------------------------------------------------------------------------- runs


def run_atheris(seconds: int, max_len: int, artifacts: pathlib.Path, extra: list[str]) -> int:
    """Run libFuzzer in a child process (it ends its process with exit()); summarize and clean up here."""
    with tempfile.TemporaryDirectory(prefix="fuzz-decoder-") as work:
        corpus = pathlib.Path(work) / "corpus"
        corpus.mkdir()
        count = write_corpus(corpus)
        dictionary = pathlib.Path(work) / "pickle.dict"
        write_dictionary(dictionary)
        print(f"fuzz-decoder: atheris (libFuzzer, coverage-guided) for {seconds} s, {count} seed inputs")
        print(f"fuzz-decoder: instrumented {', '.join(INSTRUMENTED)}; findings go to {artifacts}/")
        libfuzzer_args = [
            f"-max_total_time={seconds}",
            f"-max_len={max_len}",
            "-timeout=10",
            "-rss_limit_mb=4096",
            f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1",
            f"-dict={dictionary}",
            *extra,
            str(corpus),
        ]
        command = [sys.executable, "-m", "tests.fuzz.decoder", "--libfuzzer-child", "--", *libfuzzer_args]
        sys.stdout.flush()
        tail: list[str] = []
        with subprocess.Popen(
            command,
            env={**os.environ, CHILD_ENV: "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as child:
            assert child.stdout is not None
            for line in child.stdout:
                sys.stdout.write(line)
                tail = [*tail[-400:], line]
        code = child.returncode
        corpus_size = sum(1 for _ in corpus.iterdir())
    summarize(tail, code, count, corpus_size)
    return code


def summarize(lines: list[str], code: int, seeds: int, corpus_size: int) -> None:
    text = "".join(lines)
    done = re.search(r"Done (\d+) runs in (\d+) second", text)
    rate = re.search(r"stat::average_exec_per_sec:\s+(\d+)", text)
    coverage = re.findall(r"cov: (\d+) ft: (\d+)", text)
    written = re.findall(r"Test unit written to (\S+)", text)
    print("fuzz-decoder: summary")
    if done:
        print(f"  runs: {done.group(1)} in {done.group(2)} s ({rate.group(1) if rate else '?'} exec/s)")
    if coverage:
        print(
            f"  coverage: {coverage[-1][0]} edges, {coverage[-1][1]} features; corpus {seeds} -> {corpus_size} inputs"
        )
    if written or code:
        print(f"  FINDINGS (exit status {code}): {', '.join(written) or 'see the output above'}")
    else:
        print("  findings: none")


def run_random(seconds: int, max_len: int) -> int:
    """The fallback: hypothesis-generated inputs (mutated seeds and raw bytes) for ``seconds``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from hypothesis.configuration import set_hypothesis_home_dir

    seeds = seed_inputs()

    @st.composite
    def inputs(draw: st.DrawFn) -> bytes:
        if draw(st.integers(0, 3)) == 0:
            return draw(st.binary(max_size=min(max_len, 4096)))
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, max(len(data) - 1, 0)))
            kind = draw(st.integers(0, 2))
            if kind == 0 and data:
                data[at] ^= draw(st.integers(1, 255))
            elif kind == 1:
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            else:
                del data[at : at + draw(st.integers(1, 8))]
        return bytes(data[:max_len])

    deadline = time.monotonic() + seconds
    runs = 0

    @settings(
        max_examples=2000,
        database=None,
        deadline=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(inputs())
    def one(data: bytes) -> None:
        nonlocal runs
        if time.monotonic() >= deadline:
            return
        runs += 1
        test_one_input(data)

    why = f"atheris is not available ({ATHERIS_MISSING})" if ATHERIS_MISSING else "--no-atheris given"
    print(f"fuzz-decoder: {why}; falling back to a hypothesis-driven random run")
    print(f"fuzz-decoder: for {seconds} s, WITHOUT coverage guidance (pip install atheris for that)")
    started = time.monotonic()
    # Hypothesis caches unicode tables and constants under ./.hypothesis even without a database.
    with tempfile.TemporaryDirectory(prefix="fuzz-decoder-hypothesis-") as home:
        set_hypothesis_home_dir(home)
        try:
            while time.monotonic() < deadline:
                one()
        except Exception as exc:  # a FuzzFinding, or several in an ExceptionGroup
            print(f"fuzz-decoder: FINDING after {runs} runs: {exc!r}")
            return 1
        finally:
            set_hypothesis_home_dir(None)
    elapsed = time.monotonic() - started
    print(f"fuzz-decoder: {runs} runs in {elapsed:.0f} s ({runs / elapsed:.0f} exec/s), no findings")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz (default 60)")
    parser.add_argument("--max-len", type=int, default=16 * 1024, help="largest input to try (default 16384)")
    parser.add_argument(
        "--artifacts",
        type=pathlib.Path,
        default=pathlib.Path(tempfile.gettempdir()) / "fuzz-decoder",
        help="where libFuzzer writes crash files (default: $TMPDIR/fuzz-decoder)",
    )
    parser.add_argument("--no-atheris", action="store_true", help="use the random fallback even with atheris")
    parser.add_argument("--libfuzzer-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("libfuzzer", nargs="*", help="extra libFuzzer arguments (after --)")
    args = parser.parse_args(argv)
    if args.libfuzzer_child:
        assert atheris is not None
        atheris.Setup([sys.argv[0], *args.libfuzzer], test_one_input)
        atheris.Fuzz()  # libFuzzer exits the process when done
        return 0
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if atheris is None or args.no_atheris:
        return run_random(args.seconds, args.max_len)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    return run_atheris(args.seconds, args.max_len, args.artifacts.resolve(), args.libfuzzer)


if __name__ == "__main__":
    sys.exit(main())
