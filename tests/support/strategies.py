"""Hypothesis strategies and settings the property tests share: real records, pickles, mutations."""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import logging.handlers
import pathlib
import tempfile

import hypothesis.configuration
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = [
    "FUZZ",
    "MALFORMED_SEQS",
    "SEED_FRAMES",
    "TOKENS",
    "fuzz",
    "json_values",
    "make_frame",
    "mutated",
    "payloads",
    "pickle_like",
    "records",
    "seq_values",
    "texts",
]

# No example database, and hypothesis's other caches (unicode tables, the
# constants of local modules, written from collection on) go to a temporary
# directory: nothing is written into the work tree.  Deadlines are off because
# a slow CI machine is not a bug; example counts keep the whole module well
# under a minute on two cores.
hypothesis.configuration.set_hypothesis_home_dir(pathlib.Path(tempfile.gettempdir()) / "logrelay-hypothesis")
FUZZ = settings(
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def fuzz(examples: int) -> settings:
    """The shared settings with ``examples`` examples."""
    return settings(FUZZ, max_examples=examples)


HANDLER = logging.handlers.SocketHandler("x", 0)


def make_frame(msg: str, args: tuple[object, ...], extras: dict[str, object]) -> tuple[bytes, logging.LogRecord]:
    record = logging.LogRecord("fuzz.logger", logging.WARNING, "/srv/app/fuzz.py", 42, msg, args or None, None)
    record.__dict__.update(extras)
    return HANDLER.makePickle(record), record


SEED_FRAMES = [
    make_frame("hello", (), {})[0],
    make_frame("request %s took %d ms", ("alice", 12), {"request_id": "r-1", "n": 3})[0],
    make_frame("Grüße 東京 ✓ %s", ("\U0001f600",), {"when": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)})[0],
    make_frame("money", (), {"amount": decimal.Decimal("12.50"), "raw": b"\x00\xff", "tags": {"a", "b"}})[0],
    make_frame("nested", (), {"data": {"a": [1, 2.5, None, True, {"b": "c"}], "d": (1, "x")}})[0],
]

# Unicode text, sometimes with lone surrogates (a str built from broken input).
texts = st.text(max_size=40) | st.text(st.characters(exclude_categories=()), max_size=20)
keys = st.from_regex(r"x_[a-z0-9_]{0,8}", fullmatch=True)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
timezones = (
    st.none()
    | st.just(dt.UTC)
    | st.timezones()
    | st.builds(dt.timezone, st.timedeltas(min_value=dt.timedelta(hours=-23), max_value=dt.timedelta(hours=23)))
)
special_values = (
    st.datetimes(timezones=timezones)
    | st.dates()
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.binary(max_size=40)
    | st.sets(st.integers(-1000, 1000), max_size=6)
    | st.frozensets(texts, max_size=4)
)
extra_values = json_values | special_values | st.lists(special_values, max_size=3)
extras_strategy: st.SearchStrategy[dict[str, object]] = st.dictionaries(keys, extra_values, max_size=6)


@st.composite
def records(draw: st.DrawFn) -> tuple[bytes, logging.LogRecord, dict[str, object]]:
    msg = draw(texts)
    args: tuple[object, ...] = ()
    if draw(st.booleans()):
        msg = msg.replace("%", "%%") + " %s %r"
        args = (draw(texts), draw(json_values))
    extras = draw(extras_strategy)
    data, record = make_frame(msg, args, extras)
    return data, record, extras


pickle_like = st.builds(
    lambda head, body, tail: head + body + tail,
    st.sampled_from([b"", b"\x80\x01", b"\x80\x02", b"\x80\x04}", b"}", b"(d"]),
    st.binary(max_size=200),
    st.sampled_from([b"", b".", b"s.", b"u."]),
)
payloads = st.one_of(
    st.binary(max_size=600),
    pickle_like,
    st.sampled_from(SEED_FRAMES).map(lambda f: f[4:]),
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A real frame with bytes flipped, inserted, deleted or overwritten in its pickle; and the pickle."""
    data = draw(records())[0] if draw(st.booleans()) else draw(st.sampled_from(SEED_FRAMES))
    body = bytearray(data[4:])
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "overwrite", "truncate", "duplicate"]))
        at = draw(st.integers(0, max(len(body) - 1, 0)))
        if kind == "flip" and body:
            body[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del body[at : at + draw(st.integers(1, 8))]
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            body[at : at + len(chunk)] = chunk
        elif kind == "truncate":
            del body[at:]
        else:
            body[at:at] = body[at : at + draw(st.integers(1, 16))]
    payload = bytes(body)
    fixed = draw(st.booleans())
    header = len(payload).to_bytes(4, "big") if fixed else data[:4]
    return header + payload, payload


# --------------------------------------------------------------------------- record identities (seq)

#: Producer tokens (16 lowercase hex digits), a few so that generated entries share them.
TOKENS = (b"0123456789abcdef", b"ffffffffffffffff", b"00000000000000a1")
#: seq values that are no identity (relay.common.stream): each breaks one rule of TOKEN:N.
MALFORMED_SEQS = (
    b"",
    b"0123456789ABCDEF:1",  # uppercase
    b"0123456789abcdeF:1",
    b"0123456789abcde:1",  # 15 hex digits
    b"0123456789abcdef0:1",  # 17
    b"0123456789abcdeg:1",
    b"0123456789abcdef:0",  # N from 1
    b"0123456789abcdef:01",  # a leading zero
    b"0123456789abcdef:" + b"1" * 19,  # 19 digits
    b"0123456789abcdef:18446744073709551617",  # past 64 bits
    b"0123456789abcdef:",
    b"0123456789abcdef",
    b"0123456789abcdef-1",
    b"0123456789abcdef::1",
    b"0123456789abcdef:+1",
    b"0123456789abcdef:-1",
    b"0123456789abcdef:1 ",
    b" 0123456789abcdef:1",
    b"0123456789abcdef:1\n",
    b"0123456789abcdef:1\x00",
    b"0123456789abcdef:1a",
    b"0123456789abcdef:\xd9\xa1",  # a digit outside ASCII
    b"0123456789abcdef:1:2",
)


@st.composite
def seq_values(draw: st.DrawFn, max_size: int = 12, size: int | None = None) -> list[bytes | None]:
    """seq values for consecutive entries: mostly the last producer's next number, so that runs form; also
    another producer's next, jumps back and forth, the largest N (18 digits), malformed values, arbitrary
    bytes, and None (an entry without seq).  ``size`` values if given, else up to ``max_size``."""
    values: list[bytes | None] = []
    last: dict[bytes, int] = {}
    token = TOKENS[0]
    for _ in range(draw(st.integers(0, max_size)) if size is None else size):
        kind = draw(st.sampled_from(["same"] * 6 + ["other", "jump", "none", "malformed", "bytes"]))
        if kind in ("same", "other", "jump"):
            if kind != "same":
                token = draw(st.sampled_from(TOKENS))
            if kind != "jump" and last.get(token, 0) < 10**18 - 1:
                n = last.get(token, 0) + 1
            else:
                n = draw(st.integers(1, 10**18 - 1) | st.sampled_from([1, 2, 10**18 - 1, 10**18 - 2]))
            last[token] = n
            values.append(b"%b:%d" % (token, n))
        elif kind == "none":
            values.append(None)
        elif kind == "malformed":
            values.append(draw(st.sampled_from(MALFORMED_SEQS)))
        else:
            values.append(draw(st.binary(max_size=36)))
    return values
