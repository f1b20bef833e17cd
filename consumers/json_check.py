"""Is a record one JSON object?  Checked in C, without building it.

The JSON formatter writes each record into its line as it came, and checks
it only so that a broken record never becomes a broken line.  ``orjson.loads``
answers that by building a whole dict per record (most of the formatter's
time); the C extension ``consumers._json_check`` answers in one pass without
building anything.

The contract of :func:`is_json_object`: True only if ``orjson.loads(data)``
would return a dict.  False means "not sure": the caller asks orjson, which
decides and words the error.  The C function says False for everything
orjson refuses and for a few things it accepts that are rare in records
(nesting deeper than 128, numbers near the range of a double); ordinary
records, non-ASCII text included, are True.  tests/consumers/test_json_check.py
checks it against orjson on generated, mutated and real records.

``LOGRELAY_PURE_PYTHON=1``, or a machine where the extension could not be
built, leaves a function that always says False: every record is checked by
orjson, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from relay.common import speedups

__all__ = ["IMPLEMENTATION", "is_json_object"]


def _load() -> Callable[[bytes], bool] | None:
    extension = speedups.load("consumers._json_check")
    if extension is None:
        return None
    check: Callable[[bytes], bool] = extension.is_json_object
    return check


def _not_sure(data: bytes) -> bool:
    """Where the extension is not built: never sure, orjson checks every record."""
    return False


_check: Final = _load()

#: "c", or "python" where every record goes to orjson.
IMPLEMENTATION: Final = "c" if _check is not None else "python"

#: ``is_json_object(data)``: True only if ``orjson.loads(data)`` returns a
#: dict; False if it would not or the check is not sure.  ``data`` must be
#: bytes (TypeError otherwise).  Bound to the C function itself: no Python
#: frame per record.
is_json_object: Final = _check if _check is not None else _not_sure
