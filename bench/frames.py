"""Varied SocketHandler frames, built by the real ``SocketHandler.makePickle``."""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import logging.handlers
import random
import uuid
from types import TracebackType

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def record_fields(rng: random.Random, seq: int) -> tuple[str, tuple[object, ...], dict[str, object], bool]:
    """Message, args, extra and "with a traceback" for record ``seq`` of the benchmark mix.

    5 % tracebacks, 10 % non-ASCII messages, 10 % extras that pickle as
    classes (datetime, Decimal, set), 1 % messages of 20 KB; every record
    carries ``bench_seq`` (its index) so a run can check that each arrived
    exactly once.
    """
    kind = rng.random()
    args: tuple[object, ...] = (f"user-{rng.randrange(1000)}", rng.randrange(10_000))
    msg = "request from %s took %d ms"
    extra: dict[str, object] = {"bench_seq": seq, "request_id": str(uuid.UUID(int=rng.getrandbits(128)))}
    with_exc = False
    if kind < 0.05:
        with_exc = True
        msg = "failed to handle %s (%d)"
    elif kind < 0.15:
        msg = "Grüße aus Köln — 東京 %s %d ✓"
    elif kind < 0.25:
        extra.update(when=dt.datetime.now(dt.UTC), amount=decimal.Decimal("12.50"), tags={"a", "b"})
    elif kind < 0.26:
        msg = "large payload %s %d " + "x" * 20_000
    return msg, args, extra, with_exc


def sample_exc_info() -> ExcInfo:
    """A real exception with its traceback, for the records of the mix that carry one."""
    try:
        raise KeyError("missing")
    except KeyError as exc:
        return type(exc), exc, exc.__traceback__


def make_record(rng: random.Random, seq: int, exc_info: ExcInfo) -> logging.LogRecord:
    """Record ``seq`` of the :func:`record_fields` mix, created now."""
    msg, args, extra, with_exc = record_fields(rng, seq)
    record = logging.LogRecord(
        "bench.app", logging.INFO, "/srv/app/handlers.py", 42, msg, args, exc_info if with_exc else None
    )
    record.__dict__.update(extra)
    return record


def build_frames(count: int, *, seed: int = 1) -> list[bytes]:
    """``count`` frames of the :func:`record_fields` mix."""
    rng = random.Random(seed)
    handler = logging.handlers.SocketHandler("unused", 0)
    exc_info = sample_exc_info()
    return [handler.makePickle(make_record(rng, seq, exc_info)) for seq in range(count)]
