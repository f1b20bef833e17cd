# -*- coding: utf-8 -*-
# Python 2 and 3 alike: u'' literals, print_function, % formatting, no datetime.UTC.
# ruff: noqa: UP009, UP010, UP012, UP017, UP025, UP031
"""A sender for every CPython from 2.7 to 3.13: stock ``SocketHandler`` records with a realistic ``extra``.

Run by the interpreter under test, as a script (not a module of the
project: Python 2 cannot import it), so it is written in the Python both
languages share:

    python2.7 tests/support/legacy_sender.py --port P
        sends the records to a catcher on 127.0.0.1:P and exits 0;
    python2.7 tests/support/legacy_sender.py --frames
        prints the frames ``SocketHandler.makePickle`` makes of them, one hex
        line each (what tests/relay/decode/test_python2_frames.py and
        bench/legacy.py embed or read).

Every interpreter sends the same values: what a Python 3 program holds as
``bytes`` is a Python 2 ``str`` of the same bytes, and text is ``unicode``.
Values Python 2 has no stdlib type for (``datetime.timezone``) are sent only
where they exist; :data:`ONLY_PYTHON3` in the test names them.
"""

# fmt: off
# (the formatter would drop the u prefixes Python 2 needs)

from __future__ import print_function

import collections
import datetime
import decimal
import logging
import logging.handlers
import sys
import uuid

PY2 = sys.version_info[0] == 2
REQUEST_ID = "9b2e6c1e-5d6f-4f8e-9a57-0c3e2d1b4a69"


def extra():
    """The ``extra=`` of the values record: one of each kind a record carries."""
    values = {
        # Microseconds 50089 are the bytes C3 A9 in the state, valid UTF-8 (é):
        # Python 2 sends them in a byte string the unpickler decodes as text.
        "when": datetime.datetime(2024, 5, 6, 7, 8, 9, 50089),
        "when_micro": datetime.datetime(1999, 12, 31, 23, 59, 59, 999999),
        "day": datetime.date(2024, 2, 29),
        "at": datetime.time(23, 59, 58, 123456),
        "ordered": collections.OrderedDict([("b", 1), ("a", [1, 2]), ("c", {"x": None})]),
        "amount": decimal.Decimal("12.50"),
        "negative_amount": decimal.Decimal("-0.000001"),
        "request_id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        # Not UTF-8: bytes in Python 3, a str in Python 2.
        "blob": b"\x00\xffab\xc3",
        "empty_blob": b"",
        # UTF-8 in a Python 2 str; the same text is a str in Python 3.
        "utf8_text": u"café".encode("utf-8") if PY2 else u"café",
        "ascii_text": "plain",
        "text": u"ünïcödé ✓ 日本",
        "big": 10**30,
        "big_negative": -(2**70),
        "int64": 2**62,
        "nested": {"list": [1, 2.5, u"x", None], "tuple": (1, (2, 3)), "dict": {"k": True, "n": {"deep": [u"é"]}}},
        "tags": set([3, 1, 2]),
        "frozen": frozenset([5]),
        "nothing": None,
        "yes": True,
        "no": False,
        "ratio": 0.1,
        "queue": collections.deque([1, u"two", 3.0]),
        "grouped": collections.defaultdict(list, {"k": [1, 2]}),
        "delta": datetime.timedelta(days=1, seconds=5, microseconds=7),
    }
    if hasattr(datetime, "timezone"):
        values["when_utc"] = datetime.datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=datetime.timezone.utc)
        values["when_plus2"] = datetime.datetime(
            2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
        )
    return values


def records():
    """The records every interpreter sends, in order: values, exception, plain, typical."""
    logger = logging.getLogger("legacy.sender")
    made = []

    class Keep(logging.Handler):
        def emit(self, record):
            made.append(record)

    keep = Keep()
    logger.addHandler(keep)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.info(u"values for %s: ünïcödé", "legacy", extra=extra())
    try:
        raise ValueError(u"boom ✓".encode("utf-8") if PY2 else u"boom ✓")
    except ValueError:
        logger.exception("failed with %d", 42, extra={"step": u"third"})
    logger.warning("plain %s", "record")
    # The most common kind (bench/frames.py's mix): a formatted message, an id or two.
    # (One line: Python before 3.8 reports a call's last line as its lineno, later ones its first.)
    logger.info("request from %s took %d ms", "user-42", 137, extra={"request_id": REQUEST_ID})
    logger.removeHandler(keep)
    return made


def main(argv):
    if argv[1:] == ["--frames"]:
        handler = logging.handlers.SocketHandler("127.0.0.1", 0)
        for record in records():
            frame = handler.makePickle(record)
            print(frame.hex() if not PY2 else frame.encode("hex"))
        return 0
    if len(argv) != 3 or argv[1] != "--port":
        print("usage: legacy_sender.py --port PORT | --frames", file=sys.stderr)
        return 2
    handler = logging.handlers.SocketHandler("127.0.0.1", int(argv[2]))
    failures = []
    handler.handleError = lambda record: failures.append(record)
    for record in records():
        handler.handle(record)
        if handler.sock is None:
            failures.append(record)
    handler.close()
    if failures:
        print("records not sent: %d" % len(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
