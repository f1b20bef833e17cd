"""The fast path of decoding: a pickle straight to JSON, in C.

A record is a dict of strings and numbers, now and then with a datetime,
a Decimal or a set among its extras.  For such records the C extension
``relay.decode._fast_path`` parses the pickle and writes the JSON in one pass,
without building Python objects (measured by ``python -m bench.decode``).
It answers only when it is sure: its bytes are exactly what the Python path
(:func:`relay.decode.frames.decode_payload_python`: the scan, the unpickler, the walk
and orjson) returns, and for anything else (other classes, shared objects,
big ints, NaN, lone surrogates, records near a limit, malformed input) it
returns None and the Python path decides, refusals included.
tests/relay/decode/test_fast_path.py checks that agreement on generated, mutated
and real frames.

``LOGRELAY_PURE_PYTHON=1``, or a machine where the extension could not be
built, leaves only the Python path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from relay.common import speedups
from relay.decode.cost_model import MAX_NUMBERS
from relay.decode.to_json import MAX_VISITS

__all__ = ["IMPLEMENTATION", "feed_frames", "pickle_to_json"]


def _load() -> Any:
    extension = speedups.load("relay.decode._fast_path")
    if extension is not None:
        extension.configure(MAX_NUMBERS, MAX_VISITS)
    return extension


def _python_path_only(payload: bytes, max_depth: int, max_bytes: int) -> None:
    """Where the extension is not built: every record takes the Python path."""
    return None


_extension: Final = _load()
_convert: Final[Callable[[bytes, int, int], bytes | None] | None] = (
    _extension.convert if _extension is not None else None
)

#: "c", or "python" where only the Python path exists.
IMPLEMENTATION: Final = "c" if _convert is not None else "python"

#: ``pickle_to_json(payload, max_depth, max_bytes)``: the record's JSON when
#: the C path is sure of it, else None (use the Python path).  ``max_depth``
#: and ``max_bytes`` are the limits the Python path would apply to this
#: payload; a record anywhere near them gets None.  Bound to the C function
#: itself: no Python frame per record.
pickle_to_json: Final = _convert if _convert is not None else _python_path_only

#: ``feed_frames(buffer, need, max_frame, max_depth, max_decoded, floor,
#: factor) -> (events, consumed, need, oversize, left)``: the frame loop of
#: :meth:`relay.decode.frames.FrameDecoder.feed` in C (see ``_fast_path.c``); None
#: where the extension is not built.
feed_frames: Final[Callable[..., tuple[list[bytes | tuple[bytes]], int, int, int, int]] | None] = (
    _extension.feed_frames if _extension is not None else None
)
