"""Differential fuzzing of the syslog parse: the C (relay/decode/_syslog.c) against its Python reference.

    python -m tests.fuzz.syslog [--seconds 60] [--seed N] [--no-atheris]

Inputs are RFC 5424 messages generated field by field (PRIs around their bounds, timestamps valid and
nearly valid: leap days, day 31 of short months, hour 24, offsets at and beyond ±23:59, 1-7 fraction
digits; fields at and beyond their length limits; MSGs of any text, control characters, quotes,
backslashes, a BOM, bytes that are not UTF-8), then mutated (bytes flipped, inserted, deleted, the
message cut short, tokens of the grammar spliced in), with a received time now and then odd (-0.0,
tiny, huge, inf, nan).  For each: ``rfc5424_json`` answers None or exactly the bytes of
``syslog_record_python``; ``syslog_record`` never raises and returns a JSON object or a dead letter with
a reason; the message fed to ``SyslogStreamDecoder`` in two chunks gives what ``syslog_record`` gives
per line.  A violation is a finding: printed with its input, exit status 1.

With atheris installed (``pip install -e '.[fuzz]'``) the same :func:`test_one_input` runs under
libFuzzer (coverage of the Python modules; seeds from the generator); without it, or with
``--no-atheris`` (scripts/fuzz-sanitized, where the C is built with AddressSanitizer and UBSan), a
hypothesis-driven random run.  scripts/fuzz-decoder and scripts/fuzz-sanitized run it after the
decoder's fuzzer.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from typing import Final

import orjson
from hypothesis import strategies as st

from relay.decode.frames import BadFrame
from relay.decode.syslog_frames import SyslogStreamDecoder
from relay.decode.syslog_message import rfc5424_json, syslog_record, syslog_record_python

try:
    import atheris  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - depends on the machine
    atheris = None

RECEIVED: Final = 1_796_607_005.25
ODD_RECEIVED: Final = (RECEIVED, 1_700_000_000.0, 0.0, -0.0, 1e-05, 1e16, -12.75, math.inf, math.nan)
# Tokens of the grammar mutations splice in.
TOKENS: Final = (
    b" ", b"-", b"- ", b"<", b">", b"1 ", b"[", b"]", b'="', b'"', b"\\", b"T", b"Z", b"+", b":", b".", b"0",
    b"9", b"60", b"24", b"29", b"31", b"\xef\xbb\xbf", b"\xed\xa0\x80", b"\xc3", b"\xf4\x90", b"\x00", b"\n",
    b"\r", b"\t", b"\x7f", b"\xff",
)  # fmt: skip


class FuzzFinding(AssertionError):
    """An input on which the C and its reference disagree, or a promise of the parse is broken."""


def check(message: bytes, received: float = RECEIVED) -> None:
    """Every promise of the syslog parse for one message; raises :class:`FuzzFinding`."""
    reference = syslog_record_python(message, received)
    if rfc5424_json is not None:
        answer = rfc5424_json(message, received)
        if answer is not None and answer != reference:
            raise FuzzFinding(f"the C wrote {answer!r:.400}, the reference {reference!r:.400}")
    try:
        event = syslog_record(message, received)
    except Exception as exc:
        raise FuzzFinding(f"syslog_record let {type(exc).__name__} escape: {exc!r:.300}") from exc
    if isinstance(event, BadFrame):
        if not event.reason or event.raw != message or event != reference:
            raise FuzzFinding(f"a dead letter {event!r:.300} against the reference's {reference!r:.300}")
    elif type(event) is bytes:
        if event != reference or not isinstance(orjson.loads(event), dict):
            raise FuzzFinding(f"{event!r:.300} against the reference's {reference!r:.300}")
    else:
        raise FuzzFinding(f"syslog_record returned {type(event).__name__}")


def check_stream(message: bytes) -> None:
    """The message LF-framed, fed in two chunks: the decoder never raises, every event is a record or dead letter."""
    decoder = SyslogStreamDecoder()
    cut = message[0] % (len(message) + 1) if message else 0
    stream = message + b"\n"
    try:
        events = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) + decoder.finish()
    except Exception as exc:
        raise FuzzFinding(f"SyslogStreamDecoder let {type(exc).__name__} escape: {exc!r:.300}") from exc
    for event in events:
        if not (type(event) is bytes or (isinstance(event, BadFrame) and event.reason)):
            raise FuzzFinding(f"SyslogStreamDecoder produced {event!r:.200}")


def test_one_input(data: bytes) -> None:
    """libFuzzer's entry: the first byte picks the received time, the rest is the message."""
    received = ODD_RECEIVED[data[0] % len(ODD_RECEIVED)] if data else RECEIVED
    check(data[1:], received)
    check_stream(data[1:])


# --------------------------------------------------------------------------- generated messages


def seed_messages() -> list[bytes]:
    """Usual messages, for libFuzzer's corpus and the mutations."""
    return [
        b"<134>1 2026-12-07T01:30:05.123456Z bench-host benchapp 1001 - - s3 q00000042 xxxxxxxxxxxx",
        b"<13>1 2024-02-29T23:59:59+05:30 host app - ID1 - \xef\xbb\xbf\xc3\xa9t\xc3\xa9 \xe2\x82\xac\n",
        b"<0>1 - - - - - -",
        b'<191>1 1970-01-01T00:00:00.5-00:00 h"\\ a\\" 0123456789 m - "quoted" \\ \t\x01\x00',
        b'<165>1 2003-10-11T22:14:15.003Z mymachine evntslog 8710 ID47 [id@1 k="v"] x',
    ]


#: Generated messages per round of the random run (rounds go on until the time is up).
ROUND_EXAMPLES: Final = 100
#: Mutants checked per generated message in the random run.
MUTANTS: Final = 15


def mutated(message: bytes, rng: random.Random) -> bytes:
    """One to three byte flips, insertions (of grammar tokens or a random byte), deletions or cuts."""
    data = bytearray(message)
    for _ in range(rng.randint(1, 3)):
        at = rng.randint(0, len(data)) if rng.random() < 0.5 else rng.randint(len(data) // 2, len(data))
        kind = rng.randint(0, 4)
        if kind == 0 and at < len(data):
            data[at] ^= rng.randint(1, 255)
        elif kind == 1:
            data[at:at] = rng.choice(TOKENS)
        elif kind == 2:
            data[at:at] = bytes([rng.randint(0, 255)])
        elif kind == 3:
            del data[at : at + rng.randint(1, 8)]
        else:
            del data[at:]
    return bytes(data)


_PRINTABLE: Final = st.binary(min_size=1, max_size=4).map(lambda b: bytes(33 + x % 94 for x in b))
_SPECIAL_FIELDS: Final = st.sampled_from([b'"', b"\\", b'a"b\\c', b"0123456789", b"00000000001", b"-1"])


def _field(limit: int, edge: bool) -> st.SearchStrategy[bytes]:
    """A header field: nil, short, special, or near its limit (beyond it only when ``edge``)."""
    near = st.integers(max(1, limit - 3), limit + 1 if edge else limit).map(lambda n: b"h" * n)
    return st.one_of(st.just(b"-"), _PRINTABLE, near, _SPECIAL_FIELDS)


@st.composite
def _stamps(draw: st.DrawFn, edge: bool) -> bytes:
    """A TIMESTAMP: nil, or RFC 3339 with a valid date and time (or, when ``edge``, one near the bounds)."""
    if draw(st.integers(0, 5)) == 0:
        return b"-"
    year = draw(st.sampled_from([0, 1, 1900, 1969, 1970, 2000, 2023, 2024, 2100, 9999] if edge else [1, 1970, 2024]))
    if edge:
        month, day = draw(st.integers(0, 13)), draw(st.sampled_from([0, 1, 15, 28, 29, 30, 31, 32]))
        hour, minute, second = draw(st.integers(0, 24)), draw(st.integers(0, 60)), draw(st.integers(0, 60))
    else:
        month, day = draw(st.integers(1, 12)), draw(st.integers(1, 28))
        hour, minute, second = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    text = b"%04d-%02d-%02dT%02d:%02d:%02d" % (year, month, day, hour, minute, second)
    digits = draw(st.integers(0, 7 if edge else 6))
    if digits:
        text += b"." + b"".join(b"%d" % draw(st.integers(0, 9)) for _ in range(digits))
    if draw(st.booleans()):
        return text + b"Z"
    sign = draw(st.sampled_from([b"+", b"-"]))
    hours, minutes = draw(st.integers(0, 24 if edge else 23)), draw(st.integers(0, 60 if edge else 59))
    return text + sign + b"%02d:%02d" % (hours, minutes)


_MSGS: Final = st.one_of(
    st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),
    st.sampled_from([b"", b"\xef\xbb\xbf", b"\xef\xbb\xbfx", b'"\\\x00\x1f\x7f']),
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """An RFC 5424 message: half of them of the usual form, the other half at and beyond the bounds, mutated."""
    edge = draw(st.booleans())
    pri = draw(st.sampled_from([0, 1, 7, 8, 13, 99, 100, 134, 183, 184, 190, 191] + ([192, 999, 1000] if edge else [])))
    pri_text = b"0%d" % pri if edge and draw(st.integers(0, 9)) == 0 else b"%d" % pri
    fields = [draw(_stamps(edge)), draw(_field(255, edge)), draw(_field(48, edge)), draw(_field(128, edge))]
    fields.append(draw(_field(32, edge)))
    text = b"<" + pri_text + b">1 " + b" ".join(fields)
    sd = draw(st.sampled_from([b"", b" -", b" - ", b" -x", b' [a@1 b="c"] ', b" x"] if edge else [b" - ", b""]))
    text += sd + (draw(_MSGS) if sd.endswith(b" ") else b"")
    text += draw(st.sampled_from([b"", b"\n", b"\r\n", b"\x00", b"\n\x00"]))
    for _ in range(draw(st.integers(0, 3)) if edge else 0):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.integers(0, 3))
        if kind == 0 and at < len(text):
            text = text[:at] + bytes([text[at] ^ draw(st.integers(1, 255))]) + text[at + 1 :]
        elif kind == 1:
            text = text[:at] + draw(st.sampled_from(TOKENS)) + text[at:]
        elif kind == 2:
            text = text[:at] + text[at + draw(st.integers(1, 8)) :]
        else:
            text = text[:at]
    return text


def run_random(seconds: int, seed: int | None) -> int:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.configuration import set_hypothesis_home_dir

    deadline = time.monotonic() + seconds
    runs = taken = 0

    # Short rounds, each run whole: a test that returned early once the time was up drew less
    # when hypothesis replayed it to shrink a finding, and the finding came out as
    # FlakyStrategyDefinition instead of itself (seen in CI).  The mutations' random source is a
    # seed drawn up front for the same reason: st.randoms() draws lazily, as it is used.
    @settings(
        max_examples=ROUND_EXAMPLES,
        database=None,
        deadline=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(messages(), st.sampled_from(ODD_RECEIVED), st.integers(0, 2**64 - 1))
    def one(message: bytes, received: float, mutation_seed: int) -> None:
        nonlocal runs, taken
        rng = random.Random(mutation_seed)
        # The generated message, then cheap mutations of it (hypothesis's generation is the slow part).
        for variant in [message] + [mutated(message, rng) for _ in range(MUTANTS)]:
            runs += 1
            if rfc5424_json is not None and rfc5424_json(variant, received) is not None:
                taken += 1
            check(variant, received)
        check_stream(message)

    if rfc5424_json is None:
        print("fuzz-syslog: the C syslog parse is not built here: only the Python path's promises are checked")
    why = "atheris is not available" if atheris is None else "--no-atheris given"
    print(f"fuzz-syslog: {why}; a hypothesis-driven random run of {seconds} s (generated and mutated messages)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-syslog-hypothesis-") as home:
        set_hypothesis_home_dir(home)
        try:
            rounds = 0
            while time.monotonic() < deadline:
                if seed is not None:
                    hypothesis_seed(seed + rounds)(one)()
                else:
                    one()
                rounds += 1
        except Exception as exc:  # a FuzzFinding, or several in an ExceptionGroup
            print(f"fuzz-syslog: FINDING after {runs} runs: {exc!r}")
            return 1
        finally:
            set_hypothesis_home_dir(None)
    elapsed = time.monotonic() - started
    print(
        f"fuzz-syslog: {runs} runs in {elapsed:.0f} s ({runs / elapsed:.0f} exec/s), {taken} taken by the C, "
        "no findings"
    )
    return 0


def run_atheris(seconds: int) -> int:  # pragma: no cover - needs atheris
    with tempfile.TemporaryDirectory(prefix="fuzz-syslog-") as corpus:
        for index, message in enumerate(seed_messages()):
            with open(f"{corpus}/seed-{index:03d}", "wb") as out:
                out.write(b"\x00" + message)
        print(f"fuzz-syslog: atheris (libFuzzer) for {seconds} s")
        sys.stdout.flush()
        atheris.Setup(
            [sys.argv[0], f"-max_total_time={seconds}", "-max_len=4096", "-timeout=10", corpus], test_one_input
        )
        atheris.Fuzz()  # libFuzzer ends the process: status 0 without a finding
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed of the random run (default: random)")
    parser.add_argument("--no-atheris", action="store_true", help="use the random run even with atheris")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if atheris is None or args.no_atheris:
        return run_random(args.seconds, args.seed)
    return run_atheris(args.seconds)


if __name__ == "__main__":
    sys.exit(main())
